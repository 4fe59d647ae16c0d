"""Human and machine output for plans, runs, status and timelines. Pure formatting: no logic, no AWS."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any, Iterable

from stacksets.executor import NodeDiff, Report, State, StatusRow
from stacksets.plan import Plan


def _pairs(pairs: Iterable[tuple[str, str]]) -> str:
    return ", ".join(f"{account}/{region}" for account, region in pairs)


def plan_text(plan: Plan, diffs: list[NodeDiff]) -> str:
    by_name = {diff.stackset: diff for diff in diffs}
    lines = []
    changes = 0
    for number, wave in enumerate(plan.waves(), start=1):
        lines.append(f"wave {number}:")
        for name in wave:
            diff = by_name.get(name)
            if diff is None:
                continue
            what = []
            if not diff.exists:
                what.append("create StackSet")
            else:
                if diff.template_changed:
                    what.append("template changes")
                if diff.parameters_changed:
                    what.append("parameters change")
            if diff.create:
                what.append(f"create instances {_pairs(diff.create)}")
            if diff.update:
                what.append(f"update instances {_pairs(diff.update)}")
            if diff.delete:
                what.append(f"delete instances {_pairs(diff.delete)}")
            changes += diff.changed
            lines.append(f"  {'~' if diff.changed else '='} {name}: {'; '.join(what) or 'no change'}")
            if diff.orphaned:
                lines.append(f"      kept (not in the config; --prune deletes them): {_pairs(diff.orphaned)}")
            lines += [f"      warning: {warning}" for warning in diff.warnings]
    lines.append(f"{changes} of {len(diffs)} StackSets change")
    return "\n".join(lines) + "\n"


def plan_json(plan: Plan, diffs: list[NodeDiff]) -> str:
    payload = {"waves": plan.waves(), "stacksets": [asdict(diff) | {"changed": diff.changed} for diff in diffs]}
    return json.dumps(payload, indent=2, sort_keys=True) + "\n"


def summary_table(report: Report) -> str:
    lines = [f"{'StackSet':28} {'result':10} detail"]
    for name, result in report.results.items():
        lines.append(f"{name:28} {result.state.value:10} {result.message}".rstrip())
        for failure in result.failures:
            lines.append(f"    {failure.account}/{failure.region}: {failure.reason}")
            lines += [f"      {event}" for event in failure.events]
        for instance in result.drifted:
            lines.append(f"    drifted {instance.account}/{instance.region}: {', '.join(instance.resources)}")
    calls = sum(report.calls.values())
    lines.append(f"{'ok' if report.ok else 'FAILED'} in {report.elapsed:.1f} s, {calls} create/update/delete call(s)")
    return "\n".join(lines) + "\n"


def retained_text(report: Report) -> str:
    lines = []
    for name, result in report.results.items():
        for resource_type, logical_id in result.retained:
            lines.append(f"  {name}: {logical_id} ({resource_type})")
    if not lines:
        return ""
    heading = "Retained on purpose (data survives destroy; delete by hand when truly unwanted):"
    return heading + "\n" + "\n".join(lines) + "\n"


def status_table(rows: list[StatusRow]) -> str:
    lines = [f"{'StackSet':28} {'account':12} {'region':14} {'status':12} {'detail':12} {'drift':10}"]
    for row in rows:
        lines.append(f"{row.stackset:28} {row.account or '-':12} {row.region or '-':14} {row.status:12} "
                     f"{row.detailed_status:12} {row.drift_status:10} {row.reason}".rstrip())  # fmt: skip
    return "\n".join(lines) + "\n"


def timeline_json(report: Report) -> str:
    entries: list[dict[str, Any]] = [asdict(entry) for entry in report.timeline]
    return json.dumps({"elapsed": report.elapsed, "operations": entries}, indent=2) + "\n"


def failed(report: Report) -> bool:
    return any(result.state in (State.FAILED, State.SKIPPED) for result in report.results.values())
