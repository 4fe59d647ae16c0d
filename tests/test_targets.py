"""Which pairs a StackSet should have, and how they become as few StackSets calls as possible. Pure: no AWS."""

from __future__ import annotations

import pytest

from stacksets.config import CallAs, PermissionModel
from stacksets.plan import Node, Targets
from stacksets.targets import call_groups, desired_pairs, target_arguments

OU_A, OU_B = "ou-ab12-11111111", "ou-ab12-22222222"
MEMBERS = {OU_A: {"111111111111", "222222222222"}, OU_B: {"333333333333"}}


def test_explicit_accounts_without_ous_are_taken_as_they_are() -> None:
    targets = Targets(regions=("eu-west-1", "us-east-1"), accounts=("222222222222",))
    assert desired_pairs(targets, MEMBERS.__getitem__) == ([("222222222222", "eu-west-1"),
                                                             ("222222222222", "us-east-1")], [])  # fmt: skip


def test_ous_alone_mean_every_account_under_them() -> None:
    pairs, warnings = desired_pairs(Targets(regions=("eu-west-1",), organizational_units=(OU_A, OU_B)),
                                    MEMBERS.__getitem__)  # fmt: skip
    assert pairs == [("111111111111", "eu-west-1"), ("222222222222", "eu-west-1"), ("333333333333", "eu-west-1")]
    assert warnings == []


def test_accounts_with_ous_intersect_and_warn_about_accounts_outside() -> None:
    targets = Targets(regions=("eu-west-1",), accounts=("999999999999", "222222222222"), organizational_units=(OU_A,))
    pairs, warnings = desired_pairs(targets, MEMBERS.__getitem__)
    assert pairs == [("222222222222", "eu-west-1")]
    assert warnings == [f"account(s) 999999999999 are not in the OUs {OU_A}: StackSets will skip them"]


@pytest.mark.parametrize(("pairs", "overrides", "calls"), [
    ([], {}, []),
    # same regions, no overrides: one call for both accounts
    ([("1", "eu-west-1"), ("2", "eu-west-1")], {}, [(["eu-west-1"], ["1", "2"], {})]),
    # different regions per account: one call per region set
    ([("1", "eu-west-1"), ("1", "us-east-1"), ("2", "eu-west-1")], {},
     [(["eu-west-1"], ["2"], {}), (["eu-west-1", "us-east-1"], ["1"], {})]),
    # different overrides: separate calls, each with its own values
    ([("1", "eu-west-1"), ("2", "eu-west-1")], {("1", "eu-west-1"): {"K": "a"}, ("2", "eu-west-1"): {"K": "b"}},
     [(["eu-west-1"], ["1"], {"K": "a"}), (["eu-west-1"], ["2"], {"K": "b"})]),
    # one account whose overrides differ by region: one call per region (a call applies one set of overrides)
    ([("1", "eu-west-1"), ("1", "us-east-1")], {("1", "eu-west-1"): {"K": "a"}},
     [(["eu-west-1"], ["1"], {"K": "a"}), (["us-east-1"], ["1"], {})]),
], ids=["nothing", "shared", "regions differ", "overrides differ", "overrides differ by region"])  # fmt: skip
def test_call_groups_cover_exactly_the_pairs(pairs, overrides, calls) -> None:
    groups = call_groups(pairs, overrides)
    assert groups == calls
    assert sorted((a, r) for regions, accounts, _ in groups for a in accounts for r in regions) == sorted(pairs)


def node(permission_model: PermissionModel) -> Node:
    return Node("rstudio-x", "x.yaml", "Resources: {}\n", "0" * 64, Targets(regions=("eu-west-1",),
                                                                          organizational_units=(OU_A,)),
                permission_model, CallAs.delegated_admin, {})  # fmt: skip


def test_self_managed_targets_are_top_level_accounts() -> None:
    assert target_arguments(node(PermissionModel.self_managed), ["1"]) == {"Accounts": ["1"]}


def test_service_managed_targets_are_the_ous_filtered_to_the_accounts() -> None:
    service = node(PermissionModel.service_managed)
    assert target_arguments(service, ["1"]) == {"DeploymentTargets": {
        "OrganizationalUnitIds": [OU_A], "Accounts": ["1"], "AccountFilterType": "INTERSECTION"}}  # fmt: skip
    assert "Accounts" not in target_arguments(service, ["1"])  # never both: the API refuses Accounts with targets
