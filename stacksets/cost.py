"""What the committed templates cost a month, before usage: `deploy.py cost` and the monthly delta in `plan`. Pure:
it reads template text and the dated price table `stacksets/prices.json`, never AWS.

Only resources that bill by the hour or the month while they exist are priced (Fargate tasks, EC2 capacity, NAT
gateways, load balancers, public IPv4 addresses, keys, secrets, zones, web ACLs, alarms, SFTP endpoints, ...); what
bills by use (data transfer, NAT processing, storage, Athena scans, DataSync copies) is listed apart with its unit
price, because no template says how much of it there will be. The rules per resource type are in
`stacksets/cost_rules.py`, the price table's reader in `stacksets/prices.py`; this module adds them up per StackSet,
instance and plan.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any, Iterable

from cfn_tools import load_yaml

from stacksets import naming
from stacksets.cost_rules import RULES, USAGE, Item, Stack
from stacksets.prices import CostError, Price, PriceTable, load_prices

__all__ = ["CostError", "load_prices", "plan_cost", "plan_delta", "stack_cost", "stackset_delta"]


@dataclass(frozen=True)
class StackCost:
    """The fixed monthly cost of one StackSet: its items (already times its stacks), the assumptions they rest on,
    and the usage-priced items its resources bring."""

    stackset: str
    stacks: int
    items: tuple[Item, ...]
    assumptions: tuple[str, ...]
    usage: tuple[tuple[str, Price], ...]  # (region, price)

    @property
    def monthly(self) -> float:
        return sum(item.monthly for item in self.items)


# --------------------------------------------------------------------------------------------------------------------
# Costing StackSets


@lru_cache(maxsize=128)
def _parsed(body: str) -> dict:
    template = load_yaml(body)
    return template if isinstance(template, dict) else {}


def stack_cost(stackset: str, body: str, stacks_by_region: dict[str, int], prices: PriceTable,
               parameters: dict[str, str] | None = None) -> StackCost:  # fmt: skip
    """One StackSet's template priced in each region it has stacks in, times those stacks; `parameters` are the
    values the plan passes (the deploy's own), over the template's defaults."""
    items: list[Item] = []
    assumptions: list[str] = []
    usage: dict[tuple[str, str], Price] = {}
    template = _parsed(body)
    for region, stacks in sorted(stacks_by_region.items()):
        stack = Stack(stackset, template, region, prices, parameters or {})
        for lid, resource in sorted(stack.resources.items()):
            kind = resource.get("Type", "")
            rule = RULES.get(kind)
            if rule is not None:
                if resource.get("Condition"):
                    stack.assume(f"{stackset} {lid}: created only under condition {resource['Condition']}; "
                                 "counted as created")  # fmt: skip
                items += [replace(item, stacks=stacks) for item in rule(stack, lid, resource.get("Properties") or {})
                          if item.count]  # fmt: skip
            for key in USAGE.get(kind, ()):
                if key in prices.usage.get(region, {}):
                    usage[(region, key)] = prices.usage[region][key]
        assumptions += [text for text in stack.assumptions if text not in assumptions]
    return StackCost(stackset, sum(stacks_by_region.values()), tuple(items), tuple(assumptions),
                     tuple((region, price) for (region, _), price in sorted(usage.items())))  # fmt: skip


def _stacks_by_region(node: Any) -> tuple[dict[str, int], str]:
    """How many stacks a StackSet has per region, from its targets; OU-only targets (the service-managed bootstrap)
    are not known offline: one stack per region is priced, and the note says so."""
    pairs = node.targets.explicit_pairs()
    if pairs:
        return dict(Counter(region for _, region in pairs)), ""
    return {region: 1 for region in node.targets.regions}, "per account of its OUs"


@dataclass(frozen=True)
class Group:
    """An instance (its five StackSets) or one shared StackSet."""

    name: str
    kind: str  # "instance" or "shared"
    where: str
    stacksets: tuple[StackCost, ...]
    note: str = ""

    @property
    def monthly(self) -> float:
        return sum(cost.monthly for cost in self.stacksets)


@dataclass(frozen=True)
class CostReport:
    prices: PriceTable
    groups: tuple[Group, ...]

    @property
    def monthly(self) -> float:
        return sum(group.monthly for group in self.groups)

    def assumptions(self) -> list[str]:
        found: list[str] = []
        for group in self.groups:
            for cost in group.stacksets:
                found += [text for text in cost.assumptions if text not in found]
        return found

    def usage(self) -> list[tuple[str, Price]]:
        return sorted({entry for group in self.groups for cost in group.stacksets for entry in cost.usage},
                      key=lambda entry: (entry[0], entry[1].key))  # fmt: skip

    def unconfirmed(self) -> list[Price]:
        keys = {item.price for group in self.groups for cost in group.stacksets for item in cost.items}
        keys |= {price for _, price in self.usage()}
        return sorted((price for price in keys if price.status != "confirmed"), key=lambda price: price.key)


def literal_parameters(node: Any) -> dict[str, str]:
    """The parameter values the plan knows before the deploy (not those read from other StackSets' outputs)."""
    return {key: value for key, value in node.parameters if isinstance(value, str)}


def instance_stacksets(instance: str) -> tuple[str, ...]:
    return (naming.instance_stackset(instance), naming.storage_stackset(instance),
            naming.instance_data_stackset(instance), naming.zone_stackset(instance),
            naming.delegation_stackset(instance))  # fmt: skip


def plan_cost(plan: Any, cfg: Any, prices: PriceTable | None = None) -> CostReport:
    """The fixed monthly cost of every StackSet of the plan as committed: per instance (its five StackSets), then
    every shared StackSet, each times the stacks its targets give it."""
    prices = prices or load_prices()
    costs, notes = {}, {}
    for name, node in plan.nodes.items():
        by_region, notes[name] = _stacks_by_region(node)
        costs[name] = stack_cost(name, node.template_body, by_region, prices, literal_parameters(node))
    groups, grouped = [], set()
    for instance in sorted(cfg.instances):
        members = [costs[name] for name in instance_stacksets(instance) if name in costs]
        grouped |= {cost.stackset for cost in members}
        if members:
            where = f"{cfg.instances[instance].account}, {cfg.region_of(instance)}"
            groups.append(Group(instance, "instance", where, tuple(members)))
    for name in sorted(set(costs) - grouped):
        node = plan.nodes[name]
        where = ", ".join(node.targets.regions)
        groups.append(Group(name, "shared", where, (costs[name],), notes[name]))
    return CostReport(prices, tuple(groups))


# --------------------------------------------------------------------------------------------------------------------
# The delta of a plan: the committed templates against the deployed ones


@dataclass(frozen=True)
class Change:
    label: str
    monthly: float


@dataclass(frozen=True)
class StackSetDelta:
    stackset: str
    before: float
    after: float
    changes: tuple[Change, ...]  # per item, largest first

    @property
    def monthly(self) -> float:
        return self.after - self.before


def _by_line(items: Iterable[Item]) -> dict[tuple[str, str], tuple[str, float]]:
    """Monthly cost per (resource, price), with the words of its line: what the delta compares."""
    totals: dict[tuple[str, str], tuple[str, float]] = {}
    for item in items:
        key = (item.resource, item.price.key)
        totals[key] = (f"{item.resource}: {item.what}", totals.get(key, ("", 0.0))[1] + item.monthly)
    return totals


def stackset_delta(name: str, planned_body: str, planned_pairs: Iterable[tuple[str, str]], live_body: str | None,
                   live_pairs: Iterable[tuple[str, str]], prices: PriceTable,
                   parameters: dict[str, str] | None = None) -> StackSetDelta:  # fmt: skip
    """What the StackSet costs after the deploy (the committed template on the stacks it will have) minus what it
    costs now (the deployed template on the stacks it has; nothing when there is no StackSet or template yet)."""
    after = stack_cost(name, planned_body, dict(Counter(region for _, region in planned_pairs)), prices, parameters)
    live = list(live_pairs)
    before_items: tuple[Item, ...] = ()
    if live_body and live:
        before_items = stack_cost(name, live_body, dict(Counter(region for _, region in live)), prices,
                                  parameters).items  # fmt: skip
    old, new = _by_line(before_items), _by_line(after.items)
    changes = [Change((new.get(key) or old[key])[0], new.get(key, ("", 0.0))[1] - old.get(key, ("", 0.0))[1])
               for key in sorted(set(old) | set(new))]
    changes = sorted((change for change in changes if round(change.monthly, 2)),
                     key=lambda change: (-abs(change.monthly), change.label))  # fmt: skip
    return StackSetDelta(name, sum(item.monthly for item in before_items), after.monthly, tuple(changes))


def plan_delta(plan: Any, diffs: Iterable[Any], prices: PriceTable | None = None) -> list[StackSetDelta]:
    """Per StackSet of the diff whose monthly cost changes: the committed templates against the deployed ones."""
    prices = prices or load_prices()
    deltas = []
    for diff in diffs:
        node = plan.nodes.get(getattr(diff, "stackset", None))
        if node is None:
            continue
        live = tuple(getattr(diff, "live_pairs", ()))
        planned = (set(live) - set(diff.delete)) | set(diff.create)
        delta = stackset_delta(node.name, node.template_body, sorted(planned), getattr(diff, "live_template", None),
                               live, prices, literal_parameters(node))  # fmt: skip
        if round(delta.monthly, 2):
            deltas.append(delta)
    return deltas
