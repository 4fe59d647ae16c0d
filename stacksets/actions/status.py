"""Status rows of one StackSet: its own row, then one per instance."""

from __future__ import annotations

from stacksets.actions.context import Context
from stacksets.plan import Node
from stacksets.results import StatusRow


def stackset_status(ctx: Context, node: Node) -> list[StatusRow]:
    api = ctx.api(node)
    live = api.describe()
    if live is None:
        return [StatusRow(node.name, "", "", "NOT DEPLOYED")]
    drift = live.get("StackSetDriftDetectionDetails", {}).get("DriftStatus", "")
    rows = [StatusRow(node.name, "", "", live.get("Status", ""), drift_status=drift)]
    for i in sorted(api.instances(), key=lambda i: (i["Account"], i["Region"])):
        rows.append(StatusRow(node.name, i["Account"], i["Region"], i.get("Status", ""),
                              i.get("StackInstanceStatus", {}).get("DetailedStatus", ""),
                              i.get("DriftStatus", ""), i.get("StatusReason", "")))  # fmt: skip
    return rows
