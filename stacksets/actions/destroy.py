"""Destroy one StackSet: its instances first (one operation per call group), then the StackSet itself."""

from __future__ import annotations

from botocore.exceptions import ClientError

from stacksets.actions.context import Context, Steps
from stacksets.aws import explain
from stacksets.plan import Node
from stacksets.results import NodeFailed, State
from stacksets.targets import call_groups, target_arguments
from stacksets.template_checks import retained_resources


def destroy_stackset(ctx: Context, node: Node) -> Steps[State]:
    result = ctx.run.report.results[node.name]
    api = ctx.api(node)
    yield from ctx.operations.reattach(api)
    if api.describe() is None:
        result.message = "not deployed"
        return State.UNCHANGED
    pairs = [(i["Account"], i["Region"]) for i in api.instances()]
    for regions, accounts, _ in call_groups(pairs, {}):
        yield from ctx.operations.perform(api, "delete_stack_instances", Regions=regions, RetainStacks=False,
                                          OperationPreferences=node.operation_preferences,
                                          **target_arguments(node, accounts))  # fmt: skip
    try:
        api.delete()
    except ClientError as error:
        raise NodeFailed(str(explain(error))) from None
    result.retained = retained_resources(node.template_body)
    if result.retained:
        result.message = "retained: " + ", ".join(f"{logical} ({kind})" for kind, logical in result.retained)
    return State.SUCCEEDED
