"""Drift detection of one StackSet, and which resources drifted in each drifted instance."""

from __future__ import annotations

from stacksets.actions.context import Context, Steps
from stacksets.plan import Node
from stacksets.results import DriftedInstance, State


def detect_drift(ctx: Context, node: Node) -> Steps[State]:
    result = ctx.run.report.results[node.name]
    api = ctx.api(node)
    if api.describe() is None:
        result.message = "not deployed"
        return State.UNCHANGED
    operation = yield from ctx.operations.perform(api, "detect_stack_set_drift",
                                                  OperationPreferences=node.operation_preferences)  # fmt: skip
    for instance in api.instances():
        if instance.get("DriftStatus") != "DRIFTED":
            continue
        account, region = instance["Account"], instance["Region"]
        resources = tuple(api.resource_drifts(account, region, operation["OperationId"]))
        result.drifted.append(DriftedInstance(account, region, resources))
    result.message = f"{len(result.drifted)} drifted instance(s)" if result.drifted else "in sync"
    return State.SUCCEEDED
