"""Which account/region pairs a StackSet should have, and how to cover them in as few calls as possible. Pure."""

from __future__ import annotations

import json
from typing import Any, Callable, Iterable

from stacksets.config import PermissionModel
from stacksets.plan import Node, Targets

Pair = tuple[str, str]
Overrides = dict[Pair, dict[str, str]]


def desired_pairs(targets: Targets, accounts_under: Callable[[str], set[str]]) -> tuple[list[Pair], list[str]]:
    """Account/region pairs after OU expansion and the INTERSECTION account filter, and warnings about accounts
    the filter drops because they are in none of the OUs."""
    if not targets.organizational_units:
        return targets.explicit_pairs(), []
    in_ous: set[str] = set()
    for ou in targets.organizational_units:
        in_ous |= accounts_under(ou)
    warnings = []
    accounts = sorted(in_ous)
    if targets.accounts:
        outside = sorted(set(targets.accounts) - in_ous)
        if outside:
            warnings.append(f"account(s) {', '.join(outside)} are not in the OUs "
                            f"{', '.join(targets.organizational_units)}: StackSets will skip them")  # fmt: skip
        accounts = [a for a in targets.accounts if a in in_ous]
    return [(a, r) for a in accounts for r in targets.regions], warnings


def call_groups(pairs: Iterable[Pair], overrides: Overrides) -> list[tuple[list[str], list[str], dict[str, str]]]:
    """(regions, accounts, overrides) calls covering exactly `pairs`: accounts with the same regions and the same
    overrides share one call (the API deploys the cross product, with the same ParameterOverrides for all)."""
    by_account: dict[str, list[str]] = {}
    for account, region in pairs:
        by_account.setdefault(account, []).append(region)
    groups: dict[tuple[tuple[str, ...], str], tuple[list[str], dict[str, str]]] = {}
    for account in sorted(by_account):
        regions = sorted(by_account[account])
        # accounts whose pairs have different overrides per region get one call per region
        per_region = {json.dumps(overrides.get((account, r), {}), sort_keys=True) for r in regions}
        chunks = [regions] if len(per_region) == 1 else [[r] for r in regions]
        for chunk in chunks:
            values = overrides.get((account, chunk[0]), {})
            key = (tuple(chunk), json.dumps(values, sort_keys=True))
            groups.setdefault(key, ([], values))[0].append(account)
    return [(list(regions), accounts, values) for (regions, _), (accounts, values) in sorted(groups.items())]


def target_arguments(node: Node, accounts: list[str], units: Iterable[str] = ()) -> dict[str, Any]:
    """Self-managed: top-level Accounts. Service-managed: DeploymentTargets, the OUs filtered down to the accounts
    (the API refuses Accounts and DeploymentTargets together). `units`: more OUs to name, those live instances were
    created for (an OU that left the config still holds its instances)."""
    if node.permission_model is not PermissionModel.service_managed:
        return {"Accounts": accounts}
    ous = sorted({*node.targets.organizational_units, *units})
    return {"DeploymentTargets": {"OrganizationalUnitIds": ous, "Accounts": accounts,
                                  "AccountFilterType": "INTERSECTION"}}  # fmt: skip


def recorded_units(instances: Iterable[dict[str, Any]]) -> list[str]:
    """The OUs live instances were created for (ListStackInstances' OrganizationalUnitId)."""
    return sorted({i["OrganizationalUnitId"] for i in instances if i.get("OrganizationalUnitId")})
