"""Retired StackSets: what was deployed for an instance the config no longer has.

Removing an instance from config.yaml removes its templates on the next render, but its StackSets keep running.
`plan` lists them, and `deploy --prune` deletes the ones that hold no data (its compute and its delegation), in
reverse dependency order and before the deploy, so nothing left in the config is touched by it. The ones that hold
data (its storage, data-account data and zone) are kept and named, as `destroy` keeps them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace

from stacksets import naming
from stacksets.plan import Plan, Targets, declared_parameters

# The kinds generator/registry.py builds that hold data, by the suffix naming.py gives their StackSets.
DATA_SUFFIXES = ("-zone", "-data", "-storage")
SHARED_DATA = (naming.CENTRAL, naming.DATA)


@dataclass(frozen=True)
class Retired:
    delete: tuple[str, ...] = ()  # compute: `deploy --prune` deletes them
    keep: tuple[str, ...] = ()  # they hold data


def holds_data(stackset: str) -> bool:
    return stackset in SHARED_DATA or stackset.endswith(DATA_SUFFIXES)


def classify(live_names: list[str], plan: Plan) -> Retired:
    """The live StackSets of this tool (named rstudio-*) that the whole plan no longer has."""
    gone = sorted(name for name in live_names if name.startswith(f"{naming.PREFIX}-") and name not in plan.nodes)
    return Retired(tuple(n for n in gone if not holds_data(n)), tuple(n for n in gone if holds_data(n)))


def retired_plan(plan: Plan, bodies: dict[str, str]) -> Plan:
    """The retired compute StackSets as nodes a destroy can walk, with their live templates. They are placed like
    the bootstrap (same permission model, CallAs and OUs: every account lives under them); an instance's compute
    StackSet stands on the others of its name (rstudio-dev on rstudio-dev-delegation), so it goes first."""
    base = plan.nodes[naming.BOOTSTRAP]
    nodes = {}
    for name, body in sorted(bodies.items()):
        below = tuple(sorted(other for other in bodies if other.startswith(f"{name}-")))
        kind = "delegation" if name.endswith("-delegation") else "compute"
        preferences = plan.retired_preferences.get(kind, base.operation_preferences)
        nodes[name] = replace(base, name=name, template_file="", template_body=body, operation_preferences=preferences,
                              template_sha256=hashlib.sha256(body.encode("utf-8")).hexdigest(),
                              targets=Targets(regions=(), organizational_units=base.targets.organizational_units),
                              parameters=(), overrides=(), depends_on=below, auto_deployment=False,
                              declared=tuple(sorted(declared_parameters(body).items())))  # fmt: skip
    return Plan(nodes, retired_preferences=plan.retired_preferences)
