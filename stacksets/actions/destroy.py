"""Destroy one StackSet: its instances first (one operation per call group), then the StackSet itself."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from stacksets.actions.context import Context, Steps
from stacksets.aws import explain
from stacksets.calls import error_code
from stacksets.naming import DELETION_PROTECTION_PARAMETER
from stacksets.operations import backoff
from stacksets.plan import Node
from stacksets.results import NodeFailed, State
from stacksets.stackset_api import StackSetApi
from stacksets.targets import call_groups, recorded_units, target_arguments
from stacksets.template_checks import retained_resources
from stacksets.walk import Park


def destroy_stackset(ctx: Context, node: Node) -> Steps[State]:
    result = ctx.run.report.results[node.name]
    api = ctx.api(node)
    yield from ctx.operations.reattach(api)
    live = api.describe()
    if live is None:
        result.message = "not deployed"
        return State.UNCHANGED
    yield from _lift_deletion_protection(ctx, node, live)
    instances = api.instances()
    pairs = [(i["Account"], i["Region"]) for i in instances]
    for regions, accounts, _ in call_groups(pairs, {}):
        yield from ctx.operations.perform(api, "delete_stack_instances", Regions=regions, RetainStacks=False,
                                          OperationPreferences=node.operation_preferences,
                                          **target_arguments(node, accounts, recorded_units(instances)))  # fmt: skip
    yield from _delete_stack_set(ctx, api)
    result.retained = retained_resources(node.template_body)
    if result.retained:
        result.message = "retained: " + ", ".join(f"{logical} ({kind})" for kind, logical in result.retained)
    return State.SUCCEEDED


def _lift_deletion_protection(ctx: Context, node: Node, live: dict[str, Any]) -> Steps[None]:
    """The instance's load balancer refuses to be deleted while its deletion protection is on (by design: nothing
    else should delete it), so the first step of a destroy is a StackSet update that switches it off."""
    current = {p["ParameterKey"]: p.get("ParameterValue", "") for p in live.get("Parameters", [])}
    if current.get(DELETION_PROTECTION_PARAMETER, "false") == "false":
        return
    ctx.run.emit(node.name, State.RUNNING, "update_stack_set", "lifting the load balancer's deletion protection")
    # a parameter left to its default stays out (it keeps the default); the others keep the value they have
    defaults = {key: spec.default for key, spec in node.declared}
    kept = [{"ParameterKey": key, "UsePreviousValue": True} for key, value in sorted(current.items())
            if key != DELETION_PROTECTION_PARAMETER and value != defaults.get(key)]  # fmt: skip
    yield from ctx.operations.perform(
        ctx.api(node), "update_stack_set", UsePreviousTemplate=True, Capabilities=list(node.capabilities),
        Parameters=[*kept, {"ParameterKey": DELETION_PROTECTION_PARAMETER, "ParameterValue": "false"}],
        OperationPreferences=node.operation_preferences)  # fmt: skip


def _delete_stack_set(ctx: Context, api: StackSetApi) -> Steps[None]:
    """DeleteStackSet refuses while any operation runs on the StackSet (an automatic deployment, a drift check:
    botocore model DeleteStackSet errors OperationInProgressException): wait it out as for any operation."""
    deadline = ctx.operations.deadline()
    delays = backoff(ctx.run)
    while True:
        try:
            api.delete()
            return
        except ClientError as error:
            if error_code(error) == "StackSetNotFoundException":
                return  # an earlier attempt whose answer was lost already deleted it
            if error_code(error) != "OperationInProgressException":
                raise NodeFailed(str(explain(error))) from None
        deadline.check("delete_stack_set", "another operation on this StackSet is still running")
        yield Park(next(delays))
