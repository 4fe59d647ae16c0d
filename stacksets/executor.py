"""Runs a Plan against AWS: diff, deploy, status, drift and destroy of the StackSets, and the image step.

The executor never prints or exits: it returns data (NodeDiff, Report, StatusRow) and reports progress through the
`on_event` callback. Time (`clock`, `sleep`) and randomness (`random`) are injected so tests and the benchmark run on a
simulated clock. Every AWS call goes through `Clients` and through `_call`, which retries throttling with bounded
exponential backoff and jitter, turns credential problems into `AwsError` and counts calls per API and per StackSet.

Writes are idempotent across runs: each operation gets a client-supplied OperationId that is written to the state
file before the call, so a run that was interrupted reattaches to the operation in flight instead of starting another.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from random import random as default_random
from typing import Any, Callable, Iterable, Union

import yaml
from botocore.exceptions import ClientError, NoCredentialsError, TokenRetrievalError
from botocore.parsers import ResponseParserError

from stacksets import naming
from stacksets.aws import CREDENTIAL_ERRORS, AwsError, call_as_value, explain
from stacksets.builders import Builder, BuildStatus, CodeBuild
from stacksets.config import PermissionModel
from stacksets.plan import ImageBuild, ImageStep, Node, OutputRef, ParameterValue, Plan, Step

THROTTLING = {"Throttling", "ThrottlingException", "TooManyRequestsException", "RequestLimitExceeded",
              "SlowDown"}  # fmt: skip
MUTATING = {"create_stack_set", "update_stack_set", "delete_stack_set", "create_stack_instances",
            "update_stack_instances", "delete_stack_instances", "detect_stack_set_drift", "create_bucket",
            "put_public_access_block", "put_bucket_encryption", "put_object", "start_build",
            "put_image"}  # fmt: skip
IN_FLIGHT = {"RUNNING", "QUEUED", "STOPPING"}
COMPLETE_STACK_STATES = ["CREATE_COMPLETE", "UPDATE_COMPLETE", "UPDATE_ROLLBACK_COMPLETE", "IMPORT_COMPLETE",
                         "IMPORT_ROLLBACK_COMPLETE"]  # fmt: skip
MAX_POLL_S = 60.0
THROTTLE_ATTEMPTS = 8
THROTTLE_BASE_S = 1.0
THROTTLE_CAP_S = 20.0
FAILED_EVENTS = 5


class State(str, Enum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    SKIPPED = "SKIPPED"
    UNCHANGED = "UNCHANGED"


@dataclass
class Options:
    timeout_s: float = 3600
    poll_s: float = 15
    max_workers: int = 4
    state_path: Path = Path(".rstudio-fargate/state.json")
    staging_bucket: str | None = None
    prune: bool = False


@dataclass(frozen=True)
class Event:
    stackset: str
    state: State
    operation: str  # the API action in progress ("create_stack_instances"), or ""
    done: int  # StackSets finished so far in this run
    total: int
    message: str
    at: float  # clock() seconds since the run started


@dataclass(frozen=True)
class NodeDiff:
    """What a deploy would change in one StackSet. Parameter values not known yet read "(from <ref>)"."""

    stackset: str
    exists: bool
    template_changed: bool
    parameters_changed: bool
    parameters: dict[str, str]
    create: tuple[tuple[str, str], ...] = ()
    update: tuple[tuple[str, str], ...] = ()
    delete: tuple[tuple[str, str], ...] = ()
    orphaned: tuple[tuple[str, str], ...] = ()  # live instances the plan no longer has, kept without --prune
    warnings: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.stackset

    @property
    def changed(self) -> bool:
        return (not self.exists or self.template_changed or self.parameters_changed
                or bool(self.create or self.update or self.delete))  # fmt: skip


@dataclass(frozen=True)
class ImageDiff:
    """What a deploy would build: the pinned image tags the central account's ECR does not hold yet."""

    name: str
    present: tuple[tuple[str, str], ...] = ()  # (image, tag)
    missing: tuple[tuple[str, str], ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        return bool(self.missing)


Diff = Union[NodeDiff, ImageDiff]


@dataclass(frozen=True)
class InstanceFailure:
    account: str
    region: str
    reason: str
    events: tuple[str, ...] = ()


@dataclass(frozen=True)
class DriftedInstance:
    account: str
    region: str
    resources: tuple[str, ...] = ()  # "LogicalId (Type): MODIFIED"


@dataclass(frozen=True)
class ImageOutcome:
    image: str
    tag: str
    outcome: str  # "present", "built", "simulated" or "failed"
    seconds: float = 0.0
    build_id: str = ""


@dataclass
class NodeResult:
    stackset: str
    state: State = State.PENDING
    message: str = ""
    failures: list[InstanceFailure] = field(default_factory=list)
    operations: list[str] = field(default_factory=list)
    retained: list[tuple[str, str]] = field(default_factory=list)  # (resource type, logical id) kept by destroy
    drifted: list[DriftedInstance] = field(default_factory=list)
    images: list[ImageOutcome] = field(default_factory=list)  # the image step only


@dataclass(frozen=True)
class TimelineEntry:
    stackset: str
    operation: str
    start: float
    end: float


@dataclass
class Report:
    results: dict[str, NodeResult] = field(default_factory=dict)
    calls: Counter[str] = field(default_factory=Counter)  # mutating calls per API name
    calls_by_stackset: dict[str, Counter[str]] = field(default_factory=dict)  # every call, per StackSet
    timeline: list[TimelineEntry] = field(default_factory=list)
    elapsed: float = 0.0

    @property
    def ok(self) -> bool:
        return all(r.state in (State.SUCCEEDED, State.UNCHANGED) for r in self.results.values())

    @property
    def drifted(self) -> bool:
        return any(r.drifted for r in self.results.values())


@dataclass(frozen=True)
class StatusRow:
    stackset: str
    account: str  # "" on the StackSet's own row
    region: str
    status: str
    detailed_status: str = ""
    drift_status: str = ""
    reason: str = ""


class CredentialsError(AwsError):
    """Credentials expired or missing: the whole run stops (every further call would fail the same way)."""


class NodeFailed(Exception):
    def __init__(self, message: str, failures: Iterable[InstanceFailure] = ()) -> None:
        super().__init__(message)
        self.failures = list(failures)


def _code(error: Exception) -> str:
    return error.response.get("Error", {}).get("Code", "") if isinstance(error, ClientError) else ""


def _not_implemented(error: Exception) -> bool:
    """moto answers unimplemented actions with HTTP 500 (botocore cannot parse the HTML page)."""
    if isinstance(error, ResponseParserError):
        return True
    if isinstance(error, ClientError):
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return _code(error) in ("NotImplemented", "InternalFailure", "NotImplementedError") or status == 500
    return False


def _cf_yaml_loader() -> type[yaml.SafeLoader]:
    """A YAML loader that accepts CloudFormation short tags (!Ref, !Sub ...) as plain values."""

    class Loader(yaml.SafeLoader):
        pass

    def tagged(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
        if isinstance(node, yaml.ScalarNode):
            return loader.construct_scalar(node)
        if isinstance(node, yaml.SequenceNode):
            return loader.construct_sequence(node, deep=True)
        return loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]

    Loader.add_multi_constructor("!", tagged)
    return Loader


def retained_resources(template_body: str) -> list[tuple[str, str]]:
    """(type, logical id) of every resource a stack deletion leaves behind (DeletionPolicy Retain)."""
    data = yaml.load(template_body, Loader=_cf_yaml_loader()) or {}  # noqa: S506 - SafeLoader subclass
    resources = data.get("Resources", {}) or {}
    return sorted((res.get("Type", ""), logical) for logical, res in resources.items()
                  if res.get("DeletionPolicy") == "Retain")  # fmt: skip


def _instance_stack(name: str, stackset: str) -> bool:
    """Real AWS names instance stacks StackSet-<name>-<uuid>; stock moto StackSet:<name>."""
    if name == f"StackSet:{stackset}" or name.startswith(f"StackSet:{stackset}:"):
        return True
    return re.fullmatch(rf"StackSet-{re.escape(stackset)}-[0-9a-fA-F]{{8}}(-[0-9a-fA-F]{{4}}){{3}}-[0-9a-fA-F]{{12}}",
                        name) is not None  # fmt: skip


class StateFile:
    """Operations in flight, written before each mutating call so a later run can reattach."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def _read(self) -> dict[str, Any]:
        try:
            return json.loads(self.path.read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):
            return {"operations": {}}

    def _write(self, data: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        tmp.replace(self.path)  # atomic: an interrupted write never leaves half a file

    def pending(self, stackset: str) -> dict[str, str] | None:
        with self._lock:
            return self._read()["operations"].get(stackset)

    def record(self, stackset: str, operation_id: str, action: str) -> None:
        with self._lock:
            data = self._read()
            data["operations"][stackset] = {"operation_id": operation_id, "action": action,
                                            "recorded_at": time.time()}  # fmt: skip
            self._write(data)

    def clear(self, stackset: str, operation_id: str | None = None) -> None:
        with self._lock:
            data = self._read()
            entry = data["operations"].get(stackset)
            if entry and (operation_id is None or entry["operation_id"] == operation_id):
                del data["operations"][stackset]
                self._write(data)


class Executor:
    def __init__(self, clients: Any, *, options: Options | None = None, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep, on_event: Callable[[Event], None] = lambda event: None,
                 random: Callable[[], float] = default_random, builder: Builder | None = None) -> None:  # fmt: skip
        self.clients = clients
        self.builder: Builder = builder or CodeBuild()
        self.options = options or Options()
        self.clock = clock
        self.sleep = sleep
        self.on_event = on_event
        self.random = random
        self.state = StateFile(self.options.state_path)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._staging_lock = threading.Lock()
        self._report = Report()
        self._outputs: dict[tuple[str, str, str], dict[str, str]] = {}
        self._org_cache: dict[str, set[str]] = {}
        self._started = 0.0
        self._deadline = float("inf")
        self._done = 0
        self._total = 0
        self._credentials: CredentialsError | None = None

    # ----------------------------------------------------------------------------------------------------------------
    # Calls

    def _call(self, client: Any, api: str, **kwargs: Any) -> Any:
        """One AWS call: throttling retried with full-jitter exponential backoff, credential errors explained."""
        stackset = getattr(self._local, "stackset", "")
        for attempt in range(THROTTLE_ATTEMPTS):
            with self._lock:
                self._report.calls_by_stackset.setdefault(stackset, Counter())[api] += 1
                if api in MUTATING:
                    self._report.calls[api] += 1
            try:
                return getattr(client, api)(**kwargs)
            except (NoCredentialsError, TokenRetrievalError) as error:
                raise CredentialsError(str(explain(error))) from None
            except ClientError as error:
                code = _code(error)
                if code in CREDENTIAL_ERRORS:
                    raise CredentialsError(str(explain(error))) from None
                if code not in THROTTLING or attempt == THROTTLE_ATTEMPTS - 1:
                    raise
                self.sleep(min(THROTTLE_CAP_S, THROTTLE_BASE_S * 2**attempt) * (0.5 + self.random() / 2))
        raise AssertionError("unreachable")

    def _pages(self, client: Any, api: str, key: str, **kwargs: Any) -> list[Any]:
        items: list[Any] = []
        while True:
            page = self._call(client, api, **kwargs)
            items += page.get(key, [])
            token = page.get("NextToken")
            if not token:
                return items
            kwargs["NextToken"] = token

    def _cfn(self) -> Any:
        return self.clients.client("cloudformation")

    def _emit(self, stackset: str, state: State, operation: str = "", message: str = "") -> None:
        self.on_event(Event(stackset, state, operation, self._done, self._total, message, self.clock() - self._started))

    def _start_run(self, plan: Plan) -> Report:
        self._report = Report()
        self._started = self.clock()
        self._deadline = self._started + self.options.timeout_s
        self._done = 0
        self._total = len(plan.steps())
        self._org_cache = {}
        self._credentials = None
        return self._report

    # ----------------------------------------------------------------------------------------------------------------
    # Live state

    def _describe(self, node: Node) -> dict[str, Any] | None:
        try:
            return self._call(self._cfn(), "describe_stack_set", StackSetName=node.name,
                              **call_as_value(node.call_as))["StackSet"]  # fmt: skip
        except ClientError as error:
            if _code(error) == "StackSetNotFoundException":
                return None
            raise explain(error) from None

    def _instances(self, node: Node) -> list[dict[str, Any]]:
        return self._pages(self._cfn(), "list_stack_instances", "Summaries", StackSetName=node.name,
                           **call_as_value(node.call_as))  # fmt: skip

    def _ou_accounts(self, ou: str) -> set[str]:
        """Every account under an OU, recursively (cached per run)."""
        with self._lock:
            if ou in self._org_cache:
                return self._org_cache[ou]
        org = self.clients.client("organizations")
        accounts = {a["Id"] for a in self._pages(org, "list_accounts_for_parent", "Accounts", ParentId=ou)
                    if a.get("Status", "ACTIVE") == "ACTIVE"}  # fmt: skip
        for child in self._pages(org, "list_children", "Children", ParentId=ou, ChildType="ORGANIZATIONAL_UNIT"):
            accounts |= self._ou_accounts(child["Id"])
        with self._lock:
            self._org_cache[ou] = accounts
        return accounts

    def _desired_pairs(self, node: Node) -> tuple[list[tuple[str, str]], list[str]]:
        """Account/region pairs the node should have after OU expansion and the INTERSECTION account filter."""
        targets = node.targets
        if not targets.organizational_units:
            return targets.explicit_pairs(), []
        in_ous: set[str] = set()
        for ou in targets.organizational_units:
            in_ous |= self._ou_accounts(ou)
        warnings = []
        accounts = sorted(in_ous)
        if targets.accounts:
            outside = sorted(set(targets.accounts) - in_ous)
            if outside:
                warnings.append(f"account(s) {', '.join(outside)} are not in the OUs "
                                f"{', '.join(targets.organizational_units)}: StackSets will skip them")  # fmt: skip
            accounts = [a for a in targets.accounts if a in in_ous]
        return [(a, r) for a in accounts for r in targets.regions], warnings

    # ----------------------------------------------------------------------------------------------------------------
    # Parameters

    def _resolve(self, value: ParameterValue, strict: bool) -> str:
        if not isinstance(value, OutputRef):
            return value
        key = (value.stackset, value.account, value.region)
        with self._lock:
            known = key in self._outputs
            outputs = self._outputs.get(key, {})
        if not known:
            outputs = self._try_read_outputs(value) or {}
        if value.output in outputs:
            return outputs[value.output]
        if strict:
            raise NodeFailed(f"output {value.output} of {value.stackset} in {value.account}/{value.region} not found "
                             "(is it in the template's Outputs?)")  # fmt: skip
        return f"(from {value})"

    def _try_read_outputs(self, ref: OutputRef) -> dict[str, str] | None:
        """For plan: outputs of a producer deployed by an earlier run, or None when it is not there yet."""
        try:
            outputs = self._read_outputs(ref.stackset, ref.account, ref.region)
        except (AwsError, ClientError):
            return None
        if outputs is not None:
            with self._lock:
                self._outputs[(ref.stackset, ref.account, ref.region)] = outputs
        return outputs

    def _parameters(self, node: Node, strict: bool) -> tuple[dict[str, str], dict[tuple[str, str], dict[str, str]]]:
        """StackSet-level parameters and per-target overrides. ParameterOverrides may only name keys the StackSet
        has, so a key that only exists as an override also gets a StackSet-level value (the first target's)."""
        params = {key: self._resolve(value, strict) for key, value in node.parameters}
        overrides: dict[tuple[str, str], dict[str, str]] = {}
        for override in sorted(node.overrides, key=lambda o: (o.account, o.region)):
            values = {key: self._resolve(value, strict) for key, value in override.parameters}
            overrides[(override.account, override.region)] = values
            for key, value in values.items():
                params.setdefault(key, value)
        return params, overrides

    @staticmethod
    def _api_parameters(values: dict[str, str]) -> list[dict[str, str]]:
        return [{"ParameterKey": k, "ParameterValue": v} for k, v in sorted(values.items())]

    # ----------------------------------------------------------------------------------------------------------------
    # Diff

    def diff(self, plan: Plan) -> list[Diff]:
        self._start_run(plan)
        steps = plan.steps()
        return [self._diff_step(steps[name]) for name in plan.order()]

    def _diff_step(self, step: Step) -> Diff:
        if isinstance(step, ImageStep):
            return self._diff_images(step)
        return self._diff(step, strict=False)

    def _diff(self, node: Node, strict: bool, live: dict[str, Any] | None = None,
              instances: list[dict[str, Any]] | None = None) -> NodeDiff:  # fmt: skip
        self._local.stackset = node.name
        live = self._describe(node) if live is None else live
        params, overrides = self._parameters(node, strict)
        desired, warnings = self._desired_pairs(node)
        if live is None:
            return NodeDiff(node.name, False, True, bool(params), params, create=tuple(desired),
                            warnings=tuple(warnings))  # fmt: skip
        live_params = {p["ParameterKey"]: p.get("ParameterValue", "") for p in live.get("Parameters", [])}
        instances = self._instances(node) if instances is None else instances
        existing = {(i["Account"], i["Region"]): i for i in instances}
        extra = tuple(sorted(set(existing) - set(desired)))
        update = []
        for pair in desired:
            if pair not in existing:
                continue
            if existing[pair].get("Status") == "OUTDATED":  # a failed or interrupted earlier operation
                update.append(pair)
            elif pair in overrides and self._live_overrides(node, pair) != overrides[pair]:
                update.append(pair)
        return NodeDiff(node.name, True, live.get("TemplateBody") != node.template_body, live_params != params, params,
                        create=tuple(p for p in desired if p not in existing), update=tuple(update),
                        delete=extra if self.options.prune else (), orphaned=() if self.options.prune else extra,
                        warnings=tuple(warnings))  # fmt: skip

    def _live_overrides(self, node: Node, pair: tuple[str, str]) -> dict[str, str]:
        found = self._call(self._cfn(), "describe_stack_instance", StackSetName=node.name,
                           StackInstanceAccount=pair[0], StackInstanceRegion=pair[1],
                           **call_as_value(node.call_as))["StackInstance"]  # fmt: skip
        return {p["ParameterKey"]: p.get("ParameterValue", "") for p in found.get("ParameterOverrides", [])}

    # ----------------------------------------------------------------------------------------------------------------
    # Readiness-driven walk

    def _walk(self, plan: Plan, work: Callable[[Any], State], verb: str) -> Report:
        report = self._report
        steps = plan.steps()
        for name in steps:
            report.results[name] = NodeResult(name)
            self._emit(name, State.PENDING)
        sorter = plan.sorter()
        running: dict[Future[State], str] = {}
        with ThreadPoolExecutor(max_workers=max(1, self.options.max_workers)) as pool:
            while sorter.is_active():
                for name in sorted(sorter.get_ready()):
                    if self._credentials is not None:
                        self._finish(name, State.SKIPPED, "stopped: no valid AWS credentials")
                        sorter.done(name)
                        continue
                    blocker = next((d for d in steps[name].depends_on if d in steps
                                    and report.results[d].state in (State.FAILED, State.SKIPPED)), None)  # fmt: skip
                    if blocker is not None:
                        why = "failed" if report.results[blocker].state is State.FAILED else "was skipped"
                        self._finish(name, State.SKIPPED, f"dependency {blocker} {why}")
                        sorter.done(name)
                        continue
                    running[pool.submit(self._run_node, steps[name], work, verb)] = name
                if not running:
                    continue
                finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
                for future in finished:
                    sorter.done(running.pop(future))
        report.elapsed = self.clock() - self._started
        if self._credentials is not None:
            raise self._credentials
        return report

    def _run_node(self, node: Step, work: Callable[[Any], State], verb: str) -> State:
        self._local.stackset = node.name
        result = self._report.results[node.name]
        result.state = State.RUNNING
        self._emit(node.name, State.RUNNING, message=verb)
        try:
            state = work(node)
            self._finish(node.name, state, result.message)
        except NodeFailed as error:
            result.failures += error.failures
            self._finish(node.name, State.FAILED, str(error))
        except CredentialsError as error:
            self._credentials = error
            self._finish(node.name, State.FAILED, str(error))
        except AwsError as error:
            self._finish(node.name, State.FAILED, str(error))
        except ClientError as error:
            self._finish(node.name, State.FAILED, str(explain(error)))
        except Exception as error:  # noqa: BLE001 - one node's bug must not hide the other nodes' outcomes
            self._finish(node.name, State.FAILED, f"{type(error).__name__}: {error}")
        return self._report.results[node.name].state

    def _finish(self, name: str, state: State, message: str) -> None:
        result = self._report.results[name]
        result.state, result.message = state, message
        with self._lock:
            self._done += 1
        self._emit(name, state, message=message)

    # ----------------------------------------------------------------------------------------------------------------
    # Operations

    def _operation(self, node: Node, api: str, **kwargs: Any) -> None:
        """Start a StackSet operation with a recorded client-supplied id and wait for it to end."""
        operation_id = str(uuid.uuid4())
        self.state.record(node.name, operation_id, api)
        self._emit(node.name, State.RUNNING, api)
        start = self.clock()
        delay = self.options.poll_s
        while True:
            try:
                answer = self._call(self._cfn(), api, StackSetName=node.name, OperationId=operation_id,
                                    **call_as_value(node.call_as), **kwargs)  # fmt: skip
                # moto ignores client ids and makes its own: follow the one the service answers with
                if answer.get("OperationId", operation_id) != operation_id:
                    operation_id = answer["OperationId"]
                    self.state.record(node.name, operation_id, api)
                break
            except ClientError as error:
                code = _code(error)
                if code == "OperationIdAlreadyExistsException":
                    break  # an earlier attempt of this very call went through: wait for it
                if code != "OperationInProgressException":
                    self.state.clear(node.name, operation_id)
                    if _not_implemented(error):
                        raise
                    raise NodeFailed(str(explain(error))) from None
                self._check_deadline(node, api, "another operation on this StackSet is still running")
                self._pause(delay)
                delay = min(delay * 2, MAX_POLL_S)
        self._report.results[node.name].operations.append(operation_id)
        try:
            self._wait(node, operation_id, api)
        finally:
            with self._lock:
                self._report.timeline.append(TimelineEntry(node.name, api, start - self._started,
                                                            self.clock() - self._started))  # fmt: skip

    def _pause(self, seconds: float) -> None:
        self.sleep(max(0.0, min(seconds, self._deadline - self.clock())))

    def _check_deadline(self, node: Node, what: str, why: str) -> None:
        if self.clock() >= self._deadline:
            raise NodeFailed(f"{what}: gave up after the {self.options.timeout_s:g} s time limit: {why}; it keeps "
                             "running in AWS, and the next run reattaches to it")  # fmt: skip

    def _wait(self, node: Node, operation_id: str, api: str) -> dict[str, Any]:
        delay = self.options.poll_s
        while True:
            try:
                operation = self._call(
                    self._cfn(),
                    "describe_stack_set_operation",
                    StackSetName=node.name,
                    OperationId=operation_id,
                    **call_as_value(node.call_as),
                )["StackSetOperation"]
            except ClientError as error:
                raise NodeFailed(str(explain(error))) from None
            status = operation.get("Status", "")
            if status not in IN_FLIGHT:
                break
            self._check_deadline(node, f"{api} {operation_id}", f"the operation is still {status}")
            self._emit(node.name, State.RUNNING, api, f"{status.lower()}")
            self._pause(delay)
            delay = min(delay * 2, MAX_POLL_S)
        self.state.clear(node.name, operation_id)
        if status != "SUCCEEDED":
            reason = operation.get("StatusReason") or "see the instance failures below"
            raise NodeFailed(f"{api} {operation_id} {status}: {reason}", self._instance_failures(node))
        return operation

    def _reattach(self, node: Node) -> bool:
        """An operation recorded by an interrupted run: wait for it instead of starting another. True when there
        was one (the node then counts as changed by this run even if nothing else is left to do)."""
        pending = self.state.pending(node.name)
        if not pending:
            return False
        try:
            operation = self._call(self._cfn(), "describe_stack_set_operation", StackSetName=node.name,
                                   OperationId=pending["operation_id"],
                                   **call_as_value(node.call_as))["StackSetOperation"]  # fmt: skip
        except ClientError:
            self.state.clear(node.name)  # unknown to AWS (never started, or long expired)
            return False
        self._report.results[node.name].operations.append(pending["operation_id"])
        if operation.get("Status") in IN_FLIGHT:
            self._emit(node.name, State.RUNNING, pending["action"], f"reattached to {pending['operation_id']}")
            start = self.clock()
            try:
                self._wait(node, pending["operation_id"], pending["action"])
            except NodeFailed:
                pass  # the live diff below decides what still has to happen
            finally:
                with self._lock:
                    self._report.timeline.append(TimelineEntry(node.name, pending["action"], start - self._started,
                                                               self.clock() - self._started))  # fmt: skip
        self.state.clear(node.name)
        return True

    # ----------------------------------------------------------------------------------------------------------------
    # Failures

    def _instance_failures(self, node: Node, pairs: Iterable[tuple[str, str]] | None = None,
                           instances: list[dict[str, Any]] | None = None) -> list[InstanceFailure]:  # fmt: skip
        """Every instance that did not succeed, with its reason and the first failing events of its stack."""
        wanted = set(pairs) if pairs is not None else None
        failures = []
        seen = set()
        for instance in self._instances(node) if instances is None else instances:
            pair = (instance["Account"], instance["Region"])
            seen.add(pair)
            if wanted is not None and pair not in wanted:
                continue
            detailed = instance.get("StackInstanceStatus", {}).get("DetailedStatus", "")
            if detailed == "SUCCEEDED" or (not detailed and instance.get("Status") == "CURRENT"):
                continue
            reason = instance.get("StatusReason") or f"{instance.get('Status', '')} {detailed}".strip()
            failures.append(InstanceFailure(pair[0], pair[1], reason, tuple(self._failed_events(node.name, *pair))))
        for pair in sorted((wanted or set()) - seen):
            failures.append(InstanceFailure(pair[0], pair[1], "no stack instance was created"))
        return failures

    def _find_stack(self, stackset: str, account: str, region: str, complete_only: bool) -> str | None:
        reader = self.clients.reader(account, region)
        filters = {"StackStatusFilter": COMPLETE_STACK_STATES} if complete_only else {}
        stacks = [
            s
            for s in self._pages(reader, "list_stacks", "StackSummaries", **filters)
            if _instance_stack(s["StackName"], stackset) and s.get("StackStatus") != "DELETE_COMPLETE"
        ]
        if not stacks:
            return None
        return max(stacks, key=lambda s: str(s.get("CreationTime", "")))["StackName"]

    def _failed_events(self, stackset: str, account: str, region: str) -> list[str]:
        try:
            name = self._find_stack(stackset, account, region, complete_only=False)
            if name is None:
                return []
            events = self._pages(self.clients.reader(account, region), "describe_stack_events", "StackEvents",
                                 StackName=name)  # fmt: skip
        except (AwsError, ClientError) as error:
            return [f"(events unavailable: {error})"]
        failed = [e for e in reversed(events) if str(e.get("ResourceStatus", "")).endswith("_FAILED")]
        return [f"{e.get('LogicalResourceId', '')} ({e.get('ResourceType', '')}) {e['ResourceStatus']}: "
                f"{e.get('ResourceStatusReason', '')}" for e in failed[:FAILED_EVENTS]]  # fmt: skip

    # ----------------------------------------------------------------------------------------------------------------
    # Outputs

    def _read_outputs(self, stackset: str, account: str, region: str) -> dict[str, str] | None:
        name = self._find_stack(stackset, account, region, complete_only=True)
        if name is None:
            return None
        stacks = self._call(self.clients.reader(account, region), "describe_stacks", StackName=name)["Stacks"]
        return {o["OutputKey"]: o.get("OutputValue", "") for o in (stacks[0].get("Outputs") or [])}

    def _collect_outputs(self, node: Node, plan: Plan) -> None:
        """Outputs of this node that dependents consume (only those pairs: fewer reader calls)."""
        pairs = sorted({(ref.account, ref.region) for other in plan.nodes.values()
                        for ref in other.output_refs() if ref.stackset == node.name})  # fmt: skip
        for account, region in pairs:
            outputs = self._read_outputs(node.name, account, region)
            if outputs is None:
                raise NodeFailed(f"no instance stack of {node.name} in {account}/{region} to read outputs from")
            with self._lock:
                self._outputs[(node.name, account, region)] = outputs

    # ----------------------------------------------------------------------------------------------------------------
    # Deploy

    def deploy(self, plan: Plan) -> Report:
        self._start_run(plan)

        def work(step: Step) -> State:
            return self._deploy_images(step) if isinstance(step, ImageStep) else self._deploy_node(step, plan)

        return self._walk(plan, work, "deploy")

    def _deploy_node(self, node: Node, plan: Plan) -> State:
        reattached = self._reattach(node)
        live = self._describe(node)
        instances = self._instances(node) if live is not None else []
        change = self._diff(node, strict=True, live=live, instances=instances)
        for warning in change.warnings:
            self._emit(node.name, State.RUNNING, message=warning)
        params, overrides = self._parameters(node, strict=True)
        if live is None:
            self._create_stack_set(node, params)
        elif change.template_changed or change.parameters_changed:
            self._operation(node, "update_stack_set", Parameters=self._api_parameters(params),
                            Capabilities=list(node.capabilities), OperationPreferences=node.operation_preferences,
                            **self._template_argument(node))  # fmt: skip
        for regions, accounts, values in self._groups(change.create, overrides):
            extra = {"ParameterOverrides": self._api_parameters(values)} if values else {}
            self._operation(node, "create_stack_instances", Regions=regions,
                            OperationPreferences=node.operation_preferences,
                            **self._targets(node, accounts), **extra)  # fmt: skip
        for regions, accounts, values in self._groups(change.update, overrides):
            self._operation(node, "update_stack_instances", Regions=regions,
                            ParameterOverrides=self._api_parameters(values),
                            OperationPreferences=node.operation_preferences,
                            **self._targets(node, accounts))  # fmt: skip
        for regions, accounts, _ in self._groups(change.delete, {}):
            self._operation(node, "delete_stack_instances", Regions=regions, RetainStacks=False,
                            OperationPreferences=node.operation_preferences,
                            **self._targets(node, accounts))  # fmt: skip
        desired = [p for p in [*change.create, *change.update] if p not in change.delete]
        desired += [p for p in self._desired_pairs(node)[0] if p not in desired]
        # without a change the instance list read for the diff is still current: one call less per StackSet
        failures = self._instance_failures(node, desired, None if change.changed else instances)
        if failures:
            raise NodeFailed(f"{len(failures)} stack instance(s) failed", failures)
        self._collect_outputs(node, plan)
        return State.SUCCEEDED if change.changed or reattached else State.UNCHANGED

    def _create_stack_set(self, node: Node, params: dict[str, str]) -> None:
        service = node.permission_model is PermissionModel.service_managed
        extra: dict[str, Any] = {}
        if service:
            extra["AutoDeployment"] = {
                "Enabled": node.auto_deployment,
                **({"RetainStacksOnAccountRemoval": False} if node.auto_deployment else {}),
            }
        self._emit(node.name, State.RUNNING, "create_stack_set")
        start = self.clock()
        try:
            self._call(self._cfn(), "create_stack_set", StackSetName=node.name,
                       Parameters=self._api_parameters(params), Capabilities=list(node.capabilities),
                       PermissionModel="SERVICE_MANAGED" if service else "SELF_MANAGED",
                       ManagedExecution={"Active": True}, **self._template_argument(node),
                       **call_as_value(node.call_as), **extra)  # fmt: skip
        except ClientError as error:
            # a retried create whose first answer was lost: the StackSet is there, carry on
            if _code(error) != "NameAlreadyExistsException":
                raise NodeFailed(str(explain(error))) from None
        self._report.timeline.append(TimelineEntry(node.name, "create_stack_set", start - self._started,
                                                   self.clock() - self._started))  # fmt: skip

    def _targets(self, node: Node, accounts: list[str]) -> dict[str, Any]:
        """Self-managed: top-level Accounts. Service-managed: DeploymentTargets, the OUs filtered down to the
        accounts (the API refuses Accounts and DeploymentTargets together)."""
        if node.permission_model is not PermissionModel.service_managed:
            return {"Accounts": accounts}
        return {"DeploymentTargets": {"OrganizationalUnitIds": list(node.targets.organizational_units),
                                      "Accounts": accounts, "AccountFilterType": "INTERSECTION"}}  # fmt: skip

    @staticmethod
    def _groups(pairs: Iterable[tuple[str, str]], overrides: dict[tuple[str, str], dict[str, str]]
                ) -> list[tuple[list[str], list[str], dict[str, str]]]:  # fmt: skip
        """Account x region calls covering exactly `pairs`: accounts with the same regions and the same overrides
        share one call (the API deploys the cross product, with the same ParameterOverrides for all)."""
        by_account: dict[str, list[str]] = {}
        for account, region in pairs:
            by_account.setdefault(account, []).append(region)
        groups: dict[tuple[tuple[str, ...], str], tuple[list[str], dict[str, str]]] = {}
        for account in sorted(by_account):
            regions = sorted(by_account[account])
            # accounts whose pairs have different overrides per region get one call per region
            per_region = {json.dumps(overrides.get((account, r), {}), sort_keys=True) for r in regions}
            chunks = [regions] if len(per_region) == 1 else [[r] for r in regions]
            for chunk in chunks:
                values = overrides.get((account, chunk[0]), {})
                key = (tuple(chunk), json.dumps(values, sort_keys=True))
                groups.setdefault(key, ([], values))[0].append(account)
        return [(list(regions), accounts, values) for (regions, _), (accounts, values) in sorted(groups.items())]

    def _template_argument(self, node: Node) -> dict[str, str]:
        if not node.needs_s3:
            return {"TemplateBody": node.template_body}
        return {"TemplateURL": self._stage(node)}

    def _staging_bucket(self) -> str:
        if self.options.staging_bucket:
            return self.options.staging_bucket
        account = self._call(self.clients.client("sts"), "get_caller_identity")["Account"]
        return f"rstudio-fargate-templates-{account}-{self.clients.region}"

    def _stage(self, node: Node) -> str:
        """Upload the exact committed bytes, keyed by their hash (an unchanged template is never uploaded twice)."""
        s3 = self.clients.client("s3")
        bucket = self._staging_bucket()
        region = self.clients.region
        with self._staging_lock:  # two large templates at once must not both create the bucket
            try:
                self._call(s3, "head_bucket", Bucket=bucket)
            except ClientError as error:
                if _code(error) not in ("404", "NoSuchBucket", "NotFound"):
                    raise NodeFailed(f"staging bucket {bucket}: {explain(error)}") from None
                location = (
                    {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
                )
                self._call(s3, "create_bucket", Bucket=bucket, **location)
                self._call(s3, "put_public_access_block", Bucket=bucket, PublicAccessBlockConfiguration={
                    "BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True,
                    "RestrictPublicBuckets": True})  # fmt: skip
                self._call(s3, "put_bucket_encryption", Bucket=bucket, ServerSideEncryptionConfiguration={
                    "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]})  # fmt: skip
        key = f"templates/{node.template_sha256}.yaml"
        try:
            self._call(s3, "head_object", Bucket=bucket, Key=key)
        except ClientError as error:
            if _code(error) not in ("404", "NoSuchKey", "NotFound"):
                raise NodeFailed(f"staging bucket {bucket}: {explain(error)}") from None
            self._call(s3, "put_object", Bucket=bucket, Key=key, Body=node.template_body.encode("utf-8"),
                       ContentType="application/x-yaml")  # fmt: skip
        return f"https://{bucket}.s3.{region}.amazonaws.com/{key}"

    # ----------------------------------------------------------------------------------------------------------------
    # Status, drift, destroy

    def status(self, plan: Plan) -> list[StatusRow]:
        self._start_run(plan)
        rows = []
        steps = plan.steps()
        for name in plan.order():
            node = steps[name]
            self._local.stackset = name
            if isinstance(node, ImageStep):
                rows += self._image_status(node)
                continue
            live = self._describe(node)
            if live is None:
                rows.append(StatusRow(name, "", "", "NOT DEPLOYED"))
                continue
            drift = live.get("StackSetDriftDetectionDetails", {}).get("DriftStatus", "")
            rows.append(StatusRow(name, "", "", live.get("Status", ""), drift_status=drift))
            for i in sorted(self._instances(node), key=lambda i: (i["Account"], i["Region"])):
                rows.append(StatusRow(name, i["Account"], i["Region"], i.get("Status", ""),
                                      i.get("StackInstanceStatus", {}).get("DetailedStatus", ""),
                                      i.get("DriftStatus", ""), i.get("StatusReason", "")))  # fmt: skip
        return rows

    def drift(self, plan: Plan) -> Report:
        plan = plan.without_images()  # images are not deployed by CloudFormation: nothing can drift
        self._start_run(plan)
        return self._walk(plan, self._drift_node, "drift detection")

    def _drift_node(self, node: Node) -> State:
        result = self._report.results[node.name]
        if self._describe(node) is None:
            result.message = "not deployed"
            return State.UNCHANGED
        try:
            self._operation(node, "detect_stack_set_drift", OperationPreferences=node.operation_preferences)
        except (ClientError, ResponseParserError) as error:
            if not _not_implemented(error):
                raise
            result.message = "drift detection is unavailable here (the API is not implemented)"
            return State.UNCHANGED
        for instance in self._instances(node):
            if instance.get("DriftStatus") != "DRIFTED":
                continue
            account, region = instance["Account"], instance["Region"]
            result.drifted.append(DriftedInstance(account, region, tuple(self._resource_drifts(node, account, region))))
        result.message = f"{len(result.drifted)} drifted instance(s)" if result.drifted else "in sync"
        return State.SUCCEEDED

    def _resource_drifts(self, node: Node, account: str, region: str) -> list[str]:
        try:
            name = self._find_stack(node.name, account, region, complete_only=True)
            if name is None:
                return ["(instance stack not found)"]
            drifts = self._pages(self.clients.reader(account, region), "describe_stack_resource_drifts",
                                 "StackResourceDrifts", StackName=name,
                                 StackResourceDriftStatusFilters=["MODIFIED", "DELETED"])  # fmt: skip
        except (AwsError, ClientError) as error:
            return [f"(resource drifts unavailable: {error})"]
        return [f"{d['LogicalResourceId']} ({d.get('ResourceType', '')}): {d['StackResourceDriftStatus']}"
                for d in drifts]  # fmt: skip

    def destroy(self, plan: Plan) -> Report:
        reverse = plan.reversed()  # without the image step: the images stay in the retained repositories
        self._start_run(reverse)
        return self._walk(reverse, self._destroy_node, "destroy")

    def _destroy_node(self, node: Node) -> State:
        result = self._report.results[node.name]
        self._reattach(node)
        if self._describe(node) is None:
            result.message = "not deployed"
            return State.UNCHANGED
        instances = self._instances(node)
        if instances:
            pairs = [(i["Account"], i["Region"]) for i in instances]
            for regions, accounts, _ in self._groups(pairs, {}):
                self._operation(node, "delete_stack_instances", Regions=regions, RetainStacks=False,
                                OperationPreferences=node.operation_preferences,
                                **self._targets(node, accounts))  # fmt: skip
        try:
            self._call(self._cfn(), "delete_stack_set", StackSetName=node.name, **call_as_value(node.call_as))
        except ClientError as error:
            raise NodeFailed(str(explain(error))) from None
        result.retained = retained_resources(node.template_body)
        if result.retained:
            result.message = "retained: " + ", ".join(f"{logical} ({kind})" for kind, logical in result.retained)
        return State.SUCCEEDED

    # ----------------------------------------------------------------------------------------------------------------
    # Images

    def _diff_images(self, step: ImageStep) -> ImageDiff:
        missing, notes, unreadable = self._look_into_ecr(step)
        absent = {build.image for build in missing}
        warnings = [f"{image}: {note}" for image, note in notes.items()]
        if unreadable:
            warnings.append(f"cannot look into ECR yet, so every image counts as missing: {unreadable}")
        return ImageDiff(step.name, tuple((b.image, b.tag) for b in step.images if b.image not in absent),
                         tuple((b.image, b.tag) for b in missing), tuple(warnings))  # fmt: skip

    def _look_into_ecr(self, step: ImageStep) -> tuple[list[ImageBuild], dict[str, str], str]:
        """For plan and status, where a deploy would stop with an error: the missing builds, a note per image, and
        why ECR could not be read at all ("" when it could)."""
        self._local.stackset = step.name
        try:
            return (*self._missing_images(step, step.images, strict=False), "")
        except CredentialsError:
            raise
        except (AwsError, ClientError) as error:
            # Before rstudio-central exists there is no publisher role to look through.
            return list(step.images), {}, str(explain(error) if isinstance(error, ClientError) else error)

    def _missing_images(self, step: ImageStep, builds: Iterable[ImageBuild], strict: bool
                        ) -> tuple[list[ImageBuild], dict[str, str]]:  # fmt: skip
        """The builds whose tag is not in ECR, and a note per image whose repository is not there either."""
        central = _Central(self, step)
        missing: list[ImageBuild] = []
        notes: dict[str, str] = {}
        for build in builds:
            try:
                central.call("ecr", "describe_images", repositoryName=build.image, imageIds=[{"imageTag": build.tag}])
            except ClientError as error:
                code = _code(error)
                if code == "RepositoryNotFoundException" and strict:
                    raise NodeFailed(f"ECR repository {build.image} does not exist in {step.account}/{step.region}: "
                                     f"deploy {naming.CENTRAL} first") from None  # fmt: skip
                if code not in ("ImageNotFoundException", "RepositoryNotFoundException"):
                    raise
                missing.append(build)
                if code == "RepositoryNotFoundException":
                    notes[build.image] = f"no ECR repository {build.image} yet ({naming.CENTRAL} creates it)"
        return missing, notes

    def _image_status(self, step: ImageStep) -> list[StatusRow]:
        missing, notes, unreadable = self._look_into_ecr(step)
        absent = {build.image for build in missing}
        status = {b.image: "UNKNOWN" if unreadable else "MISSING" if b.image in absent else "PRESENT"
                  for b in step.images}  # fmt: skip
        return [StatusRow(step.name, step.account, step.region, status[b.image], b.image,
                          reason="; ".join(filter(None, (b.tag, notes.get(b.image), unreadable))))
                for b in step.images]  # fmt: skip

    def _deploy_images(self, step: ImageStep) -> State:
        result = self._report.results[step.name]
        missing, _ = self._missing_images(step, step.images, strict=True)
        absent = {build.image for build in missing}
        result.images = [ImageOutcome(b.image, b.tag, "present") for b in step.images if b.image not in absent]
        if not missing:
            result.message = "images up to date: " + ", ".join(f"{b.image} {b.tag}" for b in step.images)
            return State.UNCHANGED
        outcomes, problems, failures = self._build_images(step, missing)
        built = [build for build in missing if outcomes[build.image].outcome != "failed"]
        for build in self._missing_images(step, built, strict=True)[0]:
            outcomes[build.image] = replace(outcomes[build.image], outcome="failed")
            problems.append(f"{build.image} {build.tag}: its build {outcomes[build.image].build_id} succeeded, but "
                            f"ECR has no {build.image}:{build.tag}")  # fmt: skip
        result.images += [outcomes[build.image] for build in missing]
        if problems:
            raise NodeFailed("; ".join(problems), failures)
        result.message = f"{self.builder.outcome} {', '.join(build.image for build in missing)}"
        if self.builder.outcome == "simulated":
            result.message += " (sandbox: tags put into ECR, nothing was built)"
        return State.SUCCEEDED

    def _build_images(self, step: ImageStep, builds: list[ImageBuild]
                      ) -> tuple[dict[str, ImageOutcome], list[str], list[InstanceFailure]]:  # fmt: skip
        """Start every build, then poll them together until all have ended (CodeBuild runs them in parallel)."""
        central = _Central(self, step)
        outcomes: dict[str, ImageOutcome] = {}
        problems: list[str] = []
        failures: list[InstanceFailure] = []
        pending: dict[str, tuple[ImageBuild, float]] = {}
        for build in builds:
            start = self.clock()
            build_id = self._adopt_build(step, build, central)
            if build_id is None:
                self._emit(step.name, State.RUNNING, "start build", f"{build.image} {build.tag}")
                try:
                    build_id = self.builder.start(build, central)
                except ClientError as error:
                    outcomes[build.image] = ImageOutcome(build.image, build.tag, "failed")
                    problems.append(f"{build.image} {build.tag}: its build did not start: {explain(error)}")
                    continue
                self.state.record(self._build_key(step, build), build_id, "start_build")
            pending[build_id] = (build, start)
        delay = self.options.poll_s
        while pending:
            statuses = self.builder.poll(list(pending), central)
            for build_id in list(pending):
                status = statuses.get(build_id) or BuildStatus(True, reason=f"the builder does not know {build_id}")
                if not status.done:
                    continue
                build, start = pending.pop(build_id)
                self.state.clear(self._build_key(step, build), build_id)
                outcome = self.builder.outcome if status.succeeded else "failed"
                outcomes[build.image] = ImageOutcome(build.image, build.tag, outcome, self.clock() - start, build_id)
                with self._lock:
                    self._report.timeline.append(TimelineEntry(step.name, f"build {build.image}", start - self._started,
                                                               self.clock() - self._started))  # fmt: skip
                self._emit(step.name, State.RUNNING, "wait for builds", f"{build.image} {build.tag} {outcome}")
                if not status.succeeded:
                    problems.append(_build_problem(build, build_id, status))
                    if status.log:
                        tail = f"last lines of the log of {build_id}"
                        failures.append(InstanceFailure(step.account, step.region, tail, status.log))
            if not pending:
                break
            images = ", ".join(build.image for build, _ in pending.values())
            self._check_deadline(step, f"image build(s) {', '.join(pending)}", f"{images} still building")
            self._emit(step.name, State.RUNNING, "wait for builds", f"building {images}")
            self._pause(delay)
            delay = min(delay * 2, MAX_POLL_S)
        return outcomes, problems, failures

    @staticmethod
    def _build_key(step: ImageStep, build: ImageBuild) -> str:
        return f"{step.name}/{build.image}:{build.tag}"

    def _adopt_build(self, step: ImageStep, build: ImageBuild, central: _Central) -> str | None:
        """A build of this very tag that an interrupted run started and that is still running: wait for it instead
        of starting a second one that would race it to the immutable tag."""
        key = self._build_key(step, build)
        recorded = self.state.pending(key)
        if not recorded:
            return None
        build_id = recorded["operation_id"]
        try:
            status = self.builder.poll([build_id], central).get(build_id)
        except ClientError:
            status = None
        if status is None or status.done:
            self.state.clear(key)
            return None
        self._emit(step.name, State.RUNNING, "wait for builds", f"reattached to {build_id}")
        return build_id

    def _count_write(self, what: str) -> None:
        """A write that is not an AWS API call (`docker push`), counted with them."""
        stackset = getattr(self._local, "stackset", "")
        with self._lock:
            self._report.calls_by_stackset.setdefault(stackset, Counter())[what] += 1
            self._report.calls[what] += 1


def _build_problem(build: ImageBuild, build_id: str, status: BuildStatus) -> str:
    where = f" in phase {status.phase}" if status.phase else ""
    log = f" (log: {status.link})" if status.link else ""
    return f"{build.image} {build.tag}: build {build_id} failed{where}: {status.reason or 'no reason given'}{log}"


class _Central:
    """The central account through the publisher role, every call counted and retried by the executor's `_call`."""

    def __init__(self, executor: Executor, step: ImageStep) -> None:
        self._executor = executor
        self.account, self.region, self.bucket = step.account, step.region, step.bucket

    def call(self, service: str, api: str, **kwargs: Any) -> Any:
        client = self._executor.clients.publisher(self.account, self.region, service)
        return self._executor._call(client, api, **kwargs)

    def record_write(self, what: str) -> None:
        self._executor._count_write(what)
