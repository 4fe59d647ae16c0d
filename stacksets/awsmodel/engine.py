"""The CloudFormation stack behind each stack instance: create, update and delete a committed template, and decide
from the template itself whether AWS would succeed. `RULES` lists what is modelled and where it comes from.

Resources run in waves: every resource whose dependencies are done starts together (CREATE_IN_PROGRESS), as
CloudFormation parallelises independent resources; when one fails, the rest of its wave is cancelled.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, Protocol

from stacksets.awsmodel import engine_rules as rules
from stacksets.awsmodel.engine_rules import RULES  # noqa: F401 - published by the integrator in docs/
from stacksets.awsmodel.engine_run import Run
from stacksets.awsmodel.intrinsics import (
    NO_VALUE,
    EvaluationError,
    Scope,
    Template,
    TemplateError,
    evaluate,
    evaluate_conditions,
    parameter_values,
    parse,
)
from stacksets.awsmodel.resources import Placement, digest, is_custom, materialize, unique_key

STACK_TYPE = "AWS::CloudFormation::Stack"
UPDATABLE = ("CREATE_COMPLETE", "UPDATE_COMPLETE", "UPDATE_ROLLBACK_COMPLETE")


class Environment(Protocol):
    strict_creation_order: bool

    def now(self) -> float: ...
    def quota(self, account: str, name: str) -> int: ...
    def take_fault(self, stackset: str, account: str, region: str, logical_id: str) -> str | None: ...
    def custom_resource(self, stack: Stack, logical_id: str, resource_type: str, properties: dict,
                        request: str = "Create", old: Any = None) -> tuple[bool, dict, str]: ...
    def dns_delegated(self, domain: str) -> bool: ...


@dataclass
class DefaultEnvironment:
    """Defaults for tests and benchmarks. `faults` maps a logical id to [times left, reason]; `dns_registry`, when
    set, answers dns_delegated from the NS records in that world instead of saying yes to everything. Custom
    resources run no code here: they answer SUCCESS with `custom_data[logical id]` (the attributes a GetAtt may
    ask for), or FAILED with `custom_failures[logical id]` (`custom_delete_failures` for a Delete);
    `custom_requests` records (request, logical id) in the order they were sent."""

    strict_creation_order: bool = False
    clock: float = 0.0
    quotas: dict[str, int] = field(default_factory=dict)
    faults: dict[str, list] = field(default_factory=dict)
    custom_failures: dict[str, str] = field(default_factory=dict)
    custom_data: dict[str, dict[str, str]] = field(default_factory=dict)
    custom_delete_failures: dict[str, str] = field(default_factory=dict)
    custom_requests: list[tuple[str, str]] = field(default_factory=list)
    dns_registry: Registry | None = None

    def now(self) -> float:
        return self.clock

    def quota(self, account: str, name: str) -> int:
        return self.quotas.get(name, rules.DEFAULT_QUOTAS[name])

    def take_fault(self, stackset: str, account: str, region: str, logical_id: str) -> str | None:
        fault = self.faults.get(logical_id)
        if not fault or fault[0] <= 0:
            return None
        fault[0] -= 1
        return fault[1]

    def custom_resource(self, stack: Stack, logical_id: str, resource_type: str, properties: dict,
                        request: str = "Create", old: Any = None) -> tuple[bool, dict, str]:
        self.custom_requests.append((request, logical_id))
        reason = (self.custom_delete_failures if request == "Delete" else self.custom_failures).get(logical_id)
        if reason:
            return False, {}, reason
        return True, ({} if request == "Delete" else self.custom_data.get(logical_id, {})), ""

    def dns_delegated(self, domain: str) -> bool:
        return True if self.dns_registry is None else self.dns_registry.dns_delegated(domain)


@dataclass
class StackEvent:
    timestamp: float
    logical_id: str
    physical_id: str
    resource_type: str
    status: str
    reason: str = ""


@dataclass
class Resource:
    logical_id: str
    resource_type: str
    physical_id: str
    attributes: dict[str, Any]
    deletion_policy: str = "Delete"
    name: str | None = None
    properties: dict[str, Any] = field(default_factory=dict)  # as evaluated; an update compares against them
    update_replace_policy: str = "Delete"


@dataclass
class Stack:
    stack_id: str
    name: str
    account: str
    region: str
    stackset: str
    status: str
    status_reason: str
    parameters: dict[str, str]
    no_echo: frozenset[str]
    outputs: dict[str, str]
    resources: dict[str, Resource]
    events: list[StackEvent]
    creation_time: float
    last_updated_time: float | None
    template_body: str
    warnings: list[str] = field(default_factory=list)
    exports: dict[str, str] = field(default_factory=dict)

    @property
    def partition(self) -> str:
        return rules.partition(self.region)


@dataclass
class Retained:
    account: str
    region: str
    stack_id: str
    resource: Resource


@dataclass
class Registry:
    """The world every stack shares: physical names in use, retained resources, exports and NS delegations."""

    names: dict[tuple[str, ...], str] = field(default_factory=dict)   # unique key -> owning stack id
    kept: list[Retained] = field(default_factory=list)
    exports: dict[tuple[str, str, str], tuple[str, str]] = field(default_factory=dict)  # -> (value, stack id)
    imports: dict[tuple[str, str, str], set[str]] = field(default_factory=dict)          # -> importing stack ids
    stacks: dict[str, Stack] = field(default_factory=dict)                               # live stacks by id
    delegations: dict[tuple[str, str], str] = field(default_factory=dict)   # (stack id, logical id) -> zone
    instances: dict[tuple[str, str, str], list[rules.GroupInstance]] = field(default_factory=dict)  # by group key
    created: int = 0

    def __setstate__(self, state: dict[str, Any]) -> None:
        # a rehearsal kept by an earlier version lacks the fields added since; they start empty
        missing = {f.name: f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc]
                   for f in fields(self) if f.name not in state}  # fmt: skip
        vars(self).update(missing, **state)

    def dns_delegated(self, domain: str) -> bool:
        domain = domain.rstrip(".").lower()
        return any(domain == zone or domain.endswith("." + zone) for zone in self.delegations.values())

    def resources(self, account: str, region: str) -> list[tuple[str, Resource]]:
        """(stack id, resource) for every resource that exists in this account and Region, retained ones too."""
        found = [(s.stack_id, r) for s in self.stacks.values() if s.account == account and s.region == region
                 for r in s.resources.values()]
        return found + [(k.stack_id, k.resource) for k in self.kept if (k.account, k.region) == (account, region)]


class StackRefused(Exception):
    """What the CloudFormation API refuses before any stack work starts."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def _template(body: str) -> Template:
    try:
        return parse(body)
    except TemplateError as error:
        raise StackRefused("ValidationError", str(error)) from None


class StackEngine:
    def __init__(self, env: Environment, registry: Registry | None = None) -> None:
        self.env = env
        self.registry = registry if registry is not None else Registry()

    # --- public API --------------------------------------------------------------------------------------------

    def create(self, name: str, account: str, region: str, template_body: str, parameters: Mapping[str, str], *,
               stackset: str = "") -> Stack:
        template = _template(template_body)
        shown, typed = self._parameters(template, parameters)
        self.registry.created += 1
        uuid = digest(account, region, name, str(self.registry.created))
        stack_id = f"arn:{rules.partition(region)}:cloudformation:{region}:{account}:stack/{name}/" \
                   f"{uuid[:8]}-{uuid[8:12]}-{uuid[12:16]}-{uuid[16:20]}-{uuid[20:32]}"
        stack = Stack(stack_id, name, account, region, stackset, "CREATE_IN_PROGRESS", "", shown,
                      _no_echo(template), {}, {}, [], self.env.now(), None, template_body)
        run = Run(self, stack, template, typed)
        self.registry.stacks[stack_id] = stack
        self._stack_event(stack, "CREATE_IN_PROGRESS", "User Initiated")
        run.warn_about_order()
        failed = run.apply(list(template.order))
        if not failed:
            failed = run.publish_outputs()
        if not failed:
            stack.status, stack.status_reason = "CREATE_COMPLETE", ""
            self._stack_event(stack, "CREATE_COMPLETE")
            return stack
        reason = f"The following resource(s) failed to create: [{', '.join(failed)}]. Rollback requested by user."
        self._stack_event(stack, "ROLLBACK_IN_PROGRESS", reason)
        kept_failing = run.delete(self._delete_order(stack, template), created_now=set(stack.resources))
        stack.outputs = {}
        stack.status = "ROLLBACK_FAILED" if kept_failing else "ROLLBACK_COMPLETE"
        stack.status_reason = reason
        self._stack_event(stack, stack.status)
        return stack

    def update(self, stack: Stack, template_body: str, parameters: Mapping[str, str]) -> None:
        if stack.status not in UPDATABLE:
            raise StackRefused("ValidationError",
                               f"Stack:{stack.stack_id} is in {stack.status} state and can not be updated.")
        template = _template(template_body)
        shown, typed = self._parameters(template, parameters)
        rules.refuse_type_changes(stack, template)
        if template_body == stack.template_body and shown == stack.parameters:
            # A stack instance whose template and parameters did not change: StackSets reports the instance
            # SUCCEEDED without touching the stack (UpdateStack alone would refuse "No updates are to be performed.").
            return
        run = Run(self, stack, template, typed, updating=True)
        snapshot = (dict(stack.resources), dict(stack.outputs), dict(stack.exports), stack.parameters, stack.no_echo,
                    stack.template_body)
        stack.parameters, stack.no_echo, stack.template_body = shown, _no_echo(template), template_body
        stack.status, stack.last_updated_time = "UPDATE_IN_PROGRESS", self.env.now()
        self._stack_event(stack, "UPDATE_IN_PROGRESS", "User Initiated")
        run.warn_about_order()
        failed = run.apply(list(template.order))
        if not failed:
            failed = run.publish_outputs()
        if not failed:
            self._stack_event(stack, "UPDATE_COMPLETE_CLEANUP_IN_PROGRESS")
            run.delete_replaced_and_removed()
            stack.status, stack.status_reason = "UPDATE_COMPLETE", ""
            self._stack_event(stack, "UPDATE_COMPLETE")
            return
        reason = f"The following resource(s) failed to {run.failed_verb}: [{', '.join(failed)}]. "
        stack.status, stack.status_reason = "UPDATE_ROLLBACK_IN_PROGRESS", reason
        self._stack_event(stack, "UPDATE_ROLLBACK_IN_PROGRESS", reason)
        run.roll_back(snapshot[0])
        stack.resources, stack.outputs, stack.exports, stack.parameters, stack.no_echo, stack.template_body = snapshot
        rules.republish_exports(self.registry, stack)
        self._stack_event(stack, "UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS")
        stack.status = "UPDATE_ROLLBACK_COMPLETE"
        self._stack_event(stack, "UPDATE_ROLLBACK_COMPLETE")

    def delete(self, stack: Stack) -> None:
        if stack.status == "DELETE_COMPLETE":
            return
        stack.status = "DELETE_IN_PROGRESS"
        self._stack_event(stack, "DELETE_IN_PROGRESS", "User Initiated")
        in_use = rules.exports_in_use(self.registry, stack)
        if in_use:
            stack.status, stack.status_reason = "DELETE_FAILED", in_use
            self._stack_event(stack, "DELETE_FAILED", in_use)
            return
        template = parse(stack.template_body)
        run = Run(self, stack, template, None)
        failed = run.delete(self._delete_order(stack, template), created_now=set())
        if failed:
            stack.status = "DELETE_FAILED"
            stack.status_reason = f"The following resource(s) failed to delete: [{', '.join(failed)}]. "
            self._stack_event(stack, "DELETE_FAILED", stack.status_reason)
            return
        rules.withdraw_exports(self.registry, stack)
        stack.status, stack.status_reason, stack.outputs = "DELETE_COMPLETE", "", {}
        self._stack_event(stack, "DELETE_COMPLETE")
        del self.registry.stacks[stack.stack_id]

    def retained(self, account: str | None = None) -> list[Resource]:
        return [k.resource for k in self.registry.kept if account in (None, k.account)]

    # --- shared by the runs ------------------------------------------------------------------------------------

    def _parameters(self, template: Template, given: Mapping[str, str]) -> tuple[dict[str, str], dict[str, Any]]:
        try:
            return parameter_values(template, given)
        except TemplateError as error:
            raise StackRefused("ValidationError", str(error)) from None

    @staticmethod
    def _delete_order(stack: Stack, template: Template) -> list[str]:
        known = [lid for lid in reversed(template.order) if lid in stack.resources]
        return known + [lid for lid in reversed(stack.resources) if lid not in known]

    def _stack_event(self, stack: Stack, status: str, reason: str = "") -> None:
        stack.events.append(StackEvent(self.env.now(), stack.name, stack.stack_id, STACK_TYPE, status, reason))

    def event(self, stack: Stack, resource_type: str, logical_id: str, physical_id: str, status: str,
              reason: str = "") -> None:
        stack.events.append(StackEvent(self.env.now(), logical_id, physical_id, resource_type, status, reason))

    def new_resource(self, stack: Stack, template: Template, logical_id: str, props: dict[str, Any],
                     generation: int) -> Resource:
        declaration = template.resources[logical_id]
        resource_type = declaration["Type"]
        placement = Placement(stack.partition, stack.account, stack.region, rules.url_suffix(stack.region),
                              stack.name, f"{stack.stack_id}/{logical_id}/{generation}")
        physical_id, attributes, name = materialize(resource_type, logical_id, props, placement)
        if is_custom(resource_type):
            attributes = {}
        return Resource(logical_id, resource_type, physical_id, attributes,
                        str(declaration.get("DeletionPolicy", "Delete")), name, props,
                        str(declaration.get("UpdateReplacePolicy", "Delete")))

    def name_key(self, stack: Stack, resource: Resource) -> tuple[str, ...] | None:
        if resource.name is None:
            return None
        return unique_key(resource.resource_type, resource.name, stack.partition, stack.account, stack.region)


def _no_echo(template: Template) -> frozenset[str]:
    return frozenset(k for k, d in template.parameters.items() if str(d.get("NoEcho", "false")).lower() == "true")


__all__ = ["DefaultEnvironment", "Environment", "NO_VALUE", "RULES", "Registry", "Resource", "Scope", "Stack",
           "StackEngine", "StackEvent", "StackRefused", "EvaluationError", "evaluate", "evaluate_conditions"]
