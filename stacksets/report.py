"""Human and machine output for plans, runs, status and timelines. Pure formatting: no logic, no AWS."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any, Iterable

from stacksets.awsmodel.scenario import Limits
from stacksets.plan import Plan
from stacksets.quotas import place_quota_warnings, quota_warnings
from stacksets.results import Diff, ImageDiff, ImageOutcome, NodeDiff, Report, State, StatusRow, UndeliveredMail
from stacksets.retire import Retired

# The welcome function runs for up to 120 s; the AWS CLI gives up reading after 60 s and sends the invocation again,
# which would mail the passwords twice.
RESEND_READ_TIMEOUT_S = 150


def _pairs(pairs: Iterable[tuple[str, str]]) -> str:
    return ", ".join(f"{account}/{region}" for account, region in pairs)


def _images_line(diff: ImageDiff) -> list[str]:
    if not diff.missing:
        return [f"  = {diff.name}: images up to date ({_images(diff.present)})"]
    lines = [f"  ~ {diff.name}: build {_images(diff.missing)}"]
    if diff.present:
        lines.append(f"      already in ECR: {_images(diff.present)}")
    return lines + [f"      note: {warning}" for warning in diff.warnings]


def _images(pairs: Iterable[tuple[str, str]]) -> str:
    return ", ".join(f"{image} {tag}" for image, tag in pairs)


def images_plan_text(diff: ImageDiff) -> str:
    """What `deploy.py images` is about to do."""
    return "\n".join(_images_line(diff)) + "\n"


def _templates_by_place(plan: Plan) -> dict[tuple[str, str], list[str]]:
    places: dict[tuple[str, str], list[str]] = {}
    for node in plan.nodes.values():
        for place in node.targets.explicit_pairs():
            places.setdefault(place, []).append(node.template_body)
    return places


def plan_text(plan: Plan, diffs: list[Diff], limits: Limits | None = None) -> str:
    """The plan in dependency waves, what changes in each StackSet, and first any default quota the rollout would
    cross (`limits`: the quotas in force, AWS's defaults unless a rehearsal scenario raises them)."""
    by_name = {diff.name: diff for diff in diffs}
    stacksets_only = [diff for diff in diffs if isinstance(diff, NodeDiff)]
    lines = [f"quota: {warning}" for warning in
             quota_warnings(len(stacksets_only), {d.name: d.instances for d in stacksets_only}, limits)
             + place_quota_warnings(_templates_by_place(plan))]
    changes = 0
    stacksets = [diff for diff in diffs if isinstance(diff, NodeDiff)]
    for number, wave in enumerate(plan.waves(), start=1):
        lines.append(f"wave {number}:")
        for name in wave:
            diff = by_name.get(name)
            if isinstance(diff, ImageDiff):
                lines += _images_line(diff)
                continue
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
            if diff.retry:
                what.append(f"retry instances {_pairs(diff.retry)}")
            if diff.update:
                what.append(f"update instances {_pairs(diff.update)}")
            if diff.delete:
                what.append(f"delete instances {_pairs(diff.delete)}")
            changes += diff.changed
            lines.append(f"  {'~' if diff.changed else '='} {name}: {'; '.join(what) or 'no change'}")
            if diff.orphaned:
                lines.append(f"      kept (not in the config; --prune deletes them): {_pairs(diff.orphaned)}")
            lines += [f"      warning: {warning}" for warning in diff.warnings]
    summary = f"{changes} of {len(stacksets)} StackSets change"
    builds = sum(len(diff.missing) for diff in diffs if isinstance(diff, ImageDiff))
    if any(isinstance(diff, ImageDiff) for diff in diffs):
        summary += f", {builds} image(s) to build"
    lines.append(summary)
    return "\n".join(lines) + "\n"


def plan_json(plan: Plan, diffs: list[Diff], cost: dict[str, Any] | None = None) -> str:
    """StackSets under "stacksets", the image step (or null) under "images", the monthly cost delta under "cost"."""
    stacksets = [{key: value for key, value in asdict(diff).items() if key != "live_template"}
                 | {"changed": diff.changed} for diff in diffs if isinstance(diff, NodeDiff)]  # fmt: skip
    images = [asdict(diff) | {"changed": diff.changed} for diff in diffs if isinstance(diff, ImageDiff)]
    payload = {"waves": plan.waves(), "stacksets": stacksets, "images": images[0] if images else None}
    if cost is not None:
        payload["cost"] = cost
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
        lines += [f"    {line}" for line in image_lines(result.images)]
        for mail in result.mail:
            lines += [f"    {line}" for line in mail_lines(mail)]
    calls = sum(report.calls.values())
    lines.append(f"{'ok' if report.ok else 'FAILED'} in {report.elapsed:.1f} s, {calls} create/update/delete call(s)")
    return "\n".join(lines) + "\n"


def image_lines(outcomes: Iterable[ImageOutcome]) -> list[str]:
    """One line per image: its tag, whether it was there, built or simulated, and how long that took."""
    return [f"{o.image:8} {o.tag:26} {o.outcome:10} {o.seconds:6.1f} s  {o.build_id}".rstrip() for o in outcomes]


def mail_lines(mail: UndeliveredMail) -> list[str]:
    """Who got no welcome e-mail and why, and the command that mails them once the cause is fixed."""
    lines = [f"welcome e-mail not sent in {mail.account}/{mail.region} (the instance is deployed without it):"]
    lines += [f"  {f'{user} <{address}>: ' if user else ''}{why}" for user, address, why in mail.undelivered]
    users = sorted({user for user, _, _ in mail.undelivered if user}) or ["<user>"]
    payload = json.dumps({"resend": users})
    lines += [f"  fix the cause (e.g. verify the address in SES), then resend as account {mail.account}:",
              f"  aws lambda invoke --region {mail.region} --function-name {mail.function} --cli-binary-format "
              f"raw-in-base64-out --cli-read-timeout {RESEND_READ_TIMEOUT_S} --payload '{payload}' /dev/stdout"]
    return lines


def retained_text(report: Report) -> str:
    lines = []
    for name, result in report.results.items():
        for resource_type, logical_id in result.retained:
            lines.append(f"  {name}: {logical_id} ({resource_type})")
    if not lines:
        return ""
    heading = "Retained on purpose (data survives destroy; delete by hand when truly unwanted):"
    return heading + "\n" + "\n".join(lines) + "\n"


def retired_plan_text(retired: Retired, prune: bool) -> str:
    """What a plan or deploy says about StackSets of instances the config no longer has."""
    if not retired.delete and not retired.keep:
        return ""
    lines = ["Retired (deployed, but no longer in the config):"]
    if retired.delete:
        verb = "deleting now" if prune else "deploy --prune deletes them"
        lines.append(f"  compute, {verb}: {', '.join(retired.delete)}")
    if retired.keep:
        lines.append("  kept, they hold data (delete their stack instances and StackSets by hand when truly "
                     f"unwanted): {', '.join(retired.keep)}")  # fmt: skip
    return "\n".join(lines) + "\n"


def kept_text(kept: list[str]) -> str:
    if not kept:
        return ""
    return ("Kept (they hold data; the next deploy rebuilds the rest on them, `destroy --data` deletes them too):\n"
            + "".join(f"  {name}\n" for name in kept))  # fmt: skip


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
