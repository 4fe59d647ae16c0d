"""Destroy one StackSet: its instances first (one operation per call group), then the StackSet itself."""

from __future__ import annotations

from botocore.exceptions import ClientError

from stacksets.actions.context import Context, Steps
from stacksets.aws import explain
from stacksets.calls import error_code
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
    if api.describe() is None:
        result.message = "not deployed"
        return State.UNCHANGED
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
