"""AwsModel: the world (organization, StackSets, stacks, buckets, images), the call log, wire faults and request
rates, and the dispatch from a botocore operation to the part of the world that answers it.

    model = AwsModel.for_config(cfg, scenario, clock=SimClock())
    clients = Clients(cfg.default_region, on_client=model.install, credentials=model.admin_credentials)
    Executor(clients, clock=model.clock, sleep=model.clock.sleep).deploy(plan)
    assert not model.mutating_calls()

Every request is served under one lock: the model is never what a rollout waits for, and one lock keeps its
simulated time and state consistent across the executor's threads.
"""

from __future__ import annotations

import pickle
import re
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from stacksets.aws import Clients
from stacksets.awsmodel import adapter
from stacksets.awsmodel.adapter import ModelError, ModelGap
from stacksets.awsmodel.autoscaling import AutoScaling
from stacksets.awsmodel.clock import ManualClock, SimClock
from stacksets.awsmodel.custom import run_custom_resource
from stacksets.awsmodel.ecs import Ecs
from stacksets.awsmodel.engine import Stack, StackEngine
from stacksets.awsmodel.organization import Organization
from stacksets.awsmodel.scenario import Limits, ResourceFault, Scenario, WireFault
from stacksets.awsmodel.services import S3, Caller, Iam, Identity, Images, Secrets, Ses, Sts
from stacksets.awsmodel.stacks import Stacks
from stacksets.awsmodel.stacksets import StackSets
from stacksets.calls import MUTATING
from stacksets.config import CallAs, Config, PermissionModel

ADMIN_ACCESS_KEY = "AKIAMODELADMIN000000"  # noqa: S105 - the modelled admin account's key id, not a secret
WIRE_STATUS = {"InternalFailure": 500, "ServiceUnavailable": 503}


def snake(operation: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", operation).lower()


@dataclass(frozen=True)
class Call:
    at: float
    service: str
    api: str
    params: dict[str, Any]
    account: str
    role: str | None


@dataclass(frozen=True)
class ApiFault:
    """A fault a test injects that a scenario file cannot name (OperationInProgressException, AccessDenied, ...)."""

    api: str
    error: str
    times: int = 1


@dataclass
class Bucket:
    """A token bucket of one account, Region and service, in simulated time."""

    tokens: float
    updated: float


@dataclass
class World:
    """Everything the model knows. Picklable, so a rehearsal can be kept between commands (--sandbox-state)."""

    organization: Organization
    scenario: Scenario
    clock: Any
    admin_account: str
    delegated_admins: set[str]
    drift: dict[tuple[str, str, str], list[dict[str, Any]]] = field(default_factory=dict)
    stuck: set[str] = field(default_factory=set)
    sent_mail: list[tuple[str, str, tuple[str, ...]]] = field(default_factory=list)  # (account, sender, recipients)

    def __post_init__(self) -> None:
        self.engine = StackEngine(_Environment(self))
        self.stacks = Stacks(self.engine)
        self.stacksets = StackSets(self)
        self.sts = Sts(self)
        self.iam = Iam(self)
        self.s3 = S3(self)
        self.images = Images(self)
        self.ses = Ses(self)
        self.secrets = Secrets(self)
        self.autoscaling = AutoScaling(self)
        self.ecs = Ecs(self)
        self.model: AwsModel | None = None  # set by AwsModel: custom resources call back into it
        self.faults = list(self.scenario.faults)
        self.remaining = [f.times for f in self.faults]  # what each fault has left to fire

    def __getstate__(self) -> dict[str, Any]:
        # the AwsModel (locks, handlers) is rebuilt around a loaded world; it is not part of the kept rehearsal
        return {key: value for key, value in vars(self).items() if key != "model"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        vars(self).update(state, model=None)
        if "ecs" not in state:  # a rehearsal kept before the model served ECS tasks; Ecs holds no state of its own
            self.ecs = Ecs(self)

    @property
    def limits(self) -> Limits:
        return self.scenario.limits

    def now(self) -> float:
        return self.clock()

    def duration_for(self, name: str, default: float | None = None) -> float:
        if default is not None and name not in self.scenario.durations:
            return default
        return self.scenario.duration_for(name)

    def verified_identities(self, account: str) -> frozenset[str] | None:
        return self.scenario.verified(account)

    def drifted_resources(self, stackset: str, account: str, region: str, stack: Stack | None) -> list[dict]:
        rows = self.drift.get((stackset, account, region), [])
        return [dict(row, StackId=stack.stack_id) for row in rows] if stack is not None else []

    def take_resource_fault(self, stackset: str, account: str, region: str, logical_id: str) -> str | None:
        for index, fault in enumerate(self.faults):
            if not isinstance(fault, ResourceFault) or self.remaining[index] <= 0:
                continue
            if (fault.stackset, fault.account, fault.resource) == (stackset, account, logical_id) and \
                    fault.region in (None, region):  # fmt: skip
                self.remaining[index] -= 1
                return fault.reason or "Resource handler returned message: \"Internal Failure\" (injected fault)"
        return None

    def take_wire_fault(self, api: str) -> str | None:
        for index, fault in enumerate(self.faults):
            if isinstance(fault, (WireFault, ApiFault)) and fault.api == api and self.remaining[index] > 0:
                self.remaining[index] -= 1
                return fault.error
        return None


class _Environment:
    """What the stack engine asks of the world."""

    def __init__(self, world: World) -> None:
        self.world = world

    @property
    def strict_creation_order(self) -> bool:
        return self.world.scenario.strict_creation_order

    def now(self) -> float:
        return self.world.now()

    def quota(self, account: str, name: str) -> int:
        return self.world.scenario.quota(account, name)

    def take_fault(self, stackset: str, account: str, region: str, logical_id: str) -> str | None:
        return self.world.take_resource_fault(stackset, account, region, logical_id)

    def custom_resource(self, stack: Any, logical_id: str, resource_type: str, properties: dict,
                        request: str = "Create", old: Any = None) -> tuple:  # fmt: skip
        assert self.world.model is not None
        return run_custom_resource(self.world.model, stack, logical_id, resource_type, properties, request, old)

    def dns_delegated(self, domain: str) -> bool:
        # ACM validates by a public DNS lookup, which finds the zone only once its parent delegates to it
        return self.world.engine.registry.dns_delegated(domain)


class AwsModel:
    """The model behind every client `install` is given."""

    def __init__(self, world: World, *, validate_responses: bool = True) -> None:
        self.world = world
        self.validate_responses = validate_responses
        self.calls: Counter[str] = Counter()
        self.log: list[Call] = []
        self.rates: dict[tuple[str, str, str], Bucket] = {}
        self.lock = threading.RLock()
        self.world.sts.keys[ADMIN_ACCESS_KEY] = Identity(world.admin_account)
        self.world.model = self
        self.handlers = self._handlers()

    # --- construction ----------------------------------------------------------------------------------------------

    @classmethod
    def for_config(cls, cfg: Config, scenario: Scenario | None = None, *, clock: Any = None,
                   **options: Any) -> AwsModel:  # fmt: skip
        """The config's organization: its accounts in the first bootstrap OU (at the root when self-managed), the
        scenario's changes applied on top."""
        scenario = scenario or Scenario()
        organization = _organization(cfg, scenario)
        delegated = {cfg.accounts.admin} if cfg.stacksets.call_as is CallAs.delegated_admin else set()
        world = World(organization, scenario, clock if clock is not None else SimClock(), cfg.accounts.admin,
                      delegated)  # fmt: skip
        return cls(world, **options)

    @property
    def clock(self) -> Any:
        return self.world.clock

    @property
    def admin_credentials(self) -> dict[str, str]:
        return {"aws_access_key_id": ADMIN_ACCESS_KEY, "aws_secret_access_key": "model-secret"}

    def install(self, client: Any) -> None:
        adapter.install(self, client)

    def client_as(self, account: str, region: str, role: str, service: str) -> Any:
        """A real boto3 client acting as `role` of `account` (a Lambda function's execution role)."""
        key = f"ASIAROLE{account}{role}"[:128]
        self.world.sts.keys[key] = Identity(account, role)
        credentials = {"aws_access_key_id": key, "aws_secret_access_key": "model-secret"}
        return Clients(region, endpoint_url=adapter.CLOSED_ENDPOINT, credentials=credentials,
                       on_client=self.install).client(service)

    # --- persistence -----------------------------------------------------------------------------------------------

    def save(self, path: Path) -> None:
        """Keep the rehearsal AWS for the next command (pickle: it is this machine's own state, never shared)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        clock = self.world.clock
        self.world.clock = ManualClock(clock())
        tmp = path.with_suffix(".tmp")
        try:
            tmp.write_bytes(pickle.dumps(self.world))
            tmp.replace(path)
        finally:
            self.world.clock = clock

    @classmethod
    def load(cls, path: Path, **options: Any) -> AwsModel:
        world = pickle.loads(path.read_bytes())  # noqa: S301 - a file this tool wrote on this machine
        world.clock = SimClock(start=world.clock())
        return cls(world, **options)

    # --- the call log ----------------------------------------------------------------------------------------------

    def mutating_calls(self) -> Counter[str]:
        return Counter({api: n for api, n in self.calls.items() if api in MUTATING})

    def calls_for(self, api: str) -> list[dict[str, Any]]:
        return [call.params for call in self.log if call.api == api]

    # --- serving a request -----------------------------------------------------------------------------------------

    def handle(self, service: str, operation: str, params: dict[str, Any], access_key: str,
               region: str) -> dict[str, Any]:  # fmt: skip
        self.world.clock.touch()
        api = snake(operation)
        with self.lock:
            caller = self.world.sts.caller(access_key, region)
            self.calls[api] += 1
            self.log.append(Call(self.world.now(), service, api, params, caller.account, caller.role))
            error = self.world.take_wire_fault(api)
            if error is not None:
                raise ModelError(error, "Rate exceeded" if "Throttl" in error or "Limit" in error else
                                 f"injected {error}", WIRE_STATUS.get(error, 400))  # fmt: skip
            self._take_token(caller, service)
            self.world.iam.authorize(caller, service, operation)
            handler = self.handlers.get((service, api))
            if handler is None:
                raise ModelGap(f"the AWS model does not implement {service}.{api}")
            self.world.stacksets.advance()
            return handler(caller, params)

    def _take_token(self, caller: Caller, service: str) -> None:
        """AWS throttles callers that exceed a request rate it does not publish (Limits documents the model's)."""
        limits = self.world.limits
        now = self.world.now()
        bucket = self.rates.setdefault((caller.account, caller.region, service), Bucket(float(limits.api_burst), now))
        refill = (now - bucket.updated) * limits.api_requests_per_second
        bucket.tokens = min(float(limits.api_burst), bucket.tokens + refill)
        bucket.updated = now
        if bucket.tokens < 1.0:
            raise ModelError("Throttling", "Rate exceeded", 400)
        bucket.tokens -= 1.0

    def _handlers(self) -> dict[tuple[str, str], Callable[[Caller, dict[str, Any]], dict[str, Any]]]:
        w = self.world
        handlers: dict[tuple[str, str], Any] = {}
        for name in ("create_stack_set", "describe_stack_set", "update_stack_set", "delete_stack_set",
                     "create_stack_instances", "update_stack_instances", "delete_stack_instances",
                     "describe_stack_set_operation", "list_stack_set_operation_results", "list_stack_instances",
                     "describe_stack_instance", "detect_stack_set_drift",
                     "list_stack_instance_resource_drifts", "list_stack_sets"):  # fmt: skip
            handlers[("cloudformation", name)] = getattr(w.stacksets, name)
        for name in ("list_stacks", "describe_stacks", "describe_stack_events", "describe_stack_resource_drifts"):
            handlers[("cloudformation", name)] = getattr(w.stacks, name)
        for name in ("describe_organization", "list_roots", "list_accounts_for_parent", "list_children"):
            handlers[("organizations", name)] = _ignore_caller(getattr(w.organization, name))
        for name in ("get_caller_identity", "assume_role"):
            handlers[("sts", name)] = getattr(w.sts, name)
        for name in ("head_bucket", "create_bucket", "put_public_access_block", "put_bucket_encryption",
                     "head_object", "put_object", "get_object"):  # fmt: skip
            handlers[("s3", name)] = getattr(w.s3, name)
        for name in ("describe_images", "put_image", "get_authorization_token"):
            handlers[("ecr", name)] = getattr(w.images, name)
        for name in ("start_build", "batch_get_builds"):
            handlers[("codebuild", name)] = getattr(w.images, name)
        handlers[("logs", "get_log_events")] = w.images.get_log_events
        handlers[("ses", "get_identity_verification_attributes")] = w.ses.get_identity_verification_attributes
        handlers[("ses", "send_email")] = w.ses.send_email
        handlers[("secretsmanager", "get_secret_value")] = w.secrets.get_secret_value
        for name in ("describe_auto_scaling_groups", "set_instance_protection"):
            handlers[("autoscaling", name)] = getattr(w.autoscaling, name)
        for name in ("list_tasks", "describe_tasks"):
            handlers[("ecs", name)] = getattr(w.ecs, name)
        handlers[("ec2", "describe_network_interfaces")] = w.ecs.describe_network_interfaces
        return handlers

    # --- test and scenario knobs -----------------------------------------------------------------------------------

    def fail_next(self, api: str, error: str, times: int = 1) -> None:
        """The next `times` calls of `api` (snake_case) answer `error` (a scenario's wire faults, and any code)."""
        with self.lock:
            self.world.faults.append(ApiFault(api, error, times))
            self.world.remaining.append(times)

    def fail_resource(self, stackset: str, account: str, logical_id: str, times: int = 1, reason: str | None = None,
                      region: str | None = None) -> None:  # fmt: skip
        """The resource fails to create or update `times` times, as a scenario's resource fault."""
        with self.lock:
            self.world.faults.append(ResourceFault(stackset=stackset, account=account, resource=logical_id,
                                                   times=times, reason=reason, region=region))  # fmt: skip
            self.world.remaining.append(times)

    def never_end(self, stackset: str) -> None:
        """Operations on this StackSet stay RUNNING (an outage, or a stack waiting for hours)."""
        self.world.stuck.add(stackset)

    def drift(self, stackset: str, account: str, region: str, logical_id: str, resource_type: str,
              status: str = "MODIFIED") -> None:  # fmt: skip
        """Someone changed a resource by hand: the next drift detection finds it."""
        self.world.drift.setdefault((stackset, account, region), []).append(
            {"LogicalResourceId": logical_id, "PhysicalResourceId": logical_id, "ResourceType": resource_type,
             "StackResourceDriftStatus": status})  # fmt: skip


def _ignore_caller(handler: Callable[[dict[str, Any]], dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    return lambda caller, params: handler(params)


def _organization(cfg: Config, scenario: Scenario) -> Organization:
    units = list(cfg.stacksets.bootstrap.organizational_units)
    root = f"r-{units[0].split('-')[1]}" if units else "r-root"
    management = scenario.management_account_id(cfg)
    organization = Organization(cfg.organization.id, root, management)
    for unit in units:
        organization.add_unit(unit, root)
    for unit, declared in scenario.organizational_units.items():
        organization.add_unit(unit, declared.parent, declared.name)
    service = cfg.stacksets.permission_model is PermissionModel.service_managed
    home = units[0] if service and units else root
    named = {cfg.accounts.admin, cfg.accounts.central, cfg.accounts.network, cfg.accounts.data,
             *cfg.stacksets.bootstrap.accounts, *(i.account for i in cfg.instances.values())}  # fmt: skip
    for account in sorted(named - {management}):
        organization.place(account, home)
    organization.place(management, scenario.management_account.ou or root)
    for account, change in scenario.accounts.items():
        current = organization.accounts.get(account)
        organization.place(account, change.ou or (current.parent if current else home), change.state)
    return organization
