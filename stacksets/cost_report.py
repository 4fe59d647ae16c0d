"""Text and JSON for `deploy.py cost` and the cost lines of `plan`. Pure formatting of stacksets/cost.py's results."""

from __future__ import annotations

import json
from typing import Any

from stacksets.cost import CostReport, Item, StackSetDelta


def _money(value: float) -> str:
    return f"${value:,.2f}"


def _signed(value: float) -> str:
    return f"{'+' if value >= 0 else '-'}${abs(value):,.2f}/mo"


def _rate(item: Item) -> str:
    per = f"${item.price.price:g}/{item.price.unit}"
    hours = f" x {item.hours:g} h" if item.price.hourly else ""
    stacks = f" x {item.stacks} stacks" if item.stacks > 1 else ""
    return f"{item.count:g} x {per}{hours}{stacks}"


def cost_text(report: CostReport) -> str:
    prices = report.prices
    lines = [f"Fixed monthly cost of the committed templates, {prices.currency}, {prices.hours_per_month:g} hours a "
             f"month, on-demand list prices of {prices.date} ({prices.path})"]  # fmt: skip
    for group in report.groups:
        stacks = "" if group.kind == "instance" else \
            f", {group.stacksets[0].stacks} stack(s){f' {group.note}' if group.note else ''}"  # fmt: skip
        lines.append("")
        lines.append(f"{group.kind} {group.name} ({group.where}{stacks}): {_money(group.monthly)}/mo")
        for cost in group.stacksets:
            for item in cost.items:
                lines.append(f"  {item.label:78} {_rate(item):58} {_money(item.monthly):>10}")
        if not any(cost.items for cost in group.stacksets):
            lines.append("  nothing billed by the hour or month")
    lines += ["", f"total: {_money(report.monthly)}/mo", "", "assumptions:"]
    lines += [f"  {text}" for text in report.assumptions()] or ["  none"]
    lines += ["", "usage-priced, not in the total (pay per use):"]
    lines += [f"  {region} {price.key:26} ${price.price:g} per {price.unit}" for region, price in report.usage()]
    unconfirmed = sorted({price.key for price in report.unconfirmed()})
    if unconfirmed:
        lines += ["", "unconfirmed prices (the best public figure, not read on AWS's own pricing page; check them "
                      f"there): {', '.join(unconfirmed)}"]  # fmt: skip
    return "\n".join(lines) + "\n"


def _item_json(item: Item) -> dict[str, Any]:
    return {"stackset": item.stackset, "resource": item.resource, "what": item.what, "count": item.count,
            "unit": item.price.unit, "unit_price": item.price.price, "stacks": item.stacks,
            "hours": item.hours if item.price.hourly else None,  # null: a monthly price
            "monthly": round(item.monthly, 6), "price": item.price.key, "source": item.price.source,
            "status": item.price.status}  # fmt: skip


def cost_json(report: CostReport) -> str:
    prices = report.prices
    payload = {
        "date": prices.date, "currency": prices.currency, "hours_per_month": prices.hours_per_month,
        "prices": prices.path,
        "groups": [{"name": group.name, "kind": group.kind, "where": group.where, "note": group.note,
                    "monthly": round(group.monthly, 6),
                    "stacksets": [{"stackset": cost.stackset, "stacks": cost.stacks, "monthly": round(cost.monthly, 6),
                                   "items": [_item_json(item) for item in cost.items]}
                                  for cost in group.stacksets]}
                   for group in report.groups],
        "monthly": round(report.monthly, 6),
        "assumptions": report.assumptions(),
        "usage": [{"region": region, "price": price.key, "unit": price.unit, "unit_price": price.price,
                   "source": price.source, "status": price.status} for region, price in report.usage()],
    }  # fmt: skip
    return json.dumps(payload, indent=2, sort_keys=True) + "\n"


def delta_line(delta: StackSetDelta, top: int = 3) -> str:
    """'+$X/mo: <the largest changes>' for one StackSet."""
    parts = [f"{change.label} {_signed(change.monthly)}" for change in delta.changes[:top]]
    more = len(delta.changes) - top
    return f"{_signed(delta.monthly)}: {'; '.join(parts)}{f'; and {more} more' if more > 0 else ''}"


def delta_text(deltas: list[StackSetDelta], unknown: str | None = None) -> str:
    """The plan's cost lines: per StackSet whose fixed monthly cost changes, and the sum (or why it is unknown)."""
    if unknown:
        return f"monthly cost: unknown ({unknown})\n"
    if not deltas:
        return "monthly cost: no change (committed templates vs deployed ones)\n"
    lines = [f"monthly cost: {_signed(sum(delta.monthly for delta in deltas))} (committed templates vs deployed "
             "ones, fixed costs at on-demand prices; `deploy.py cost` itemizes)"]  # fmt: skip
    lines += [f"  {delta.stackset}: {delta_line(delta)}" for delta in deltas]
    return "\n".join(lines) + "\n"


def delta_json(deltas: list[StackSetDelta], unknown: str | None = None) -> dict[str, Any]:
    if unknown:
        return {"monthly": None, "unknown": unknown, "stacksets": []}
    return {"monthly": round(sum(delta.monthly for delta in deltas), 6), "unknown": None,
            "stacksets": [{"stackset": delta.stackset, "before": round(delta.before, 6),
                           "after": round(delta.after, 6), "monthly": round(delta.monthly, 6),
                           "changes": [{"what": change.label, "monthly": round(change.monthly, 6)}
                                       for change in delta.changes]}
                          for delta in deltas]}  # fmt: skip
