"""The plan is pure data: dependency order, targets, output-fed overrides, reversal and cycles."""

from __future__ import annotations

from dataclasses import replace

import pytest

from stacksets.config import parse_config
from stacksets.plan import OutputRef, PlanError, build_plan, operation_preferences
from tests.conftest import TEMPLATES


@pytest.fixture(scope="module")
def plan(cfg):
    return build_plan(cfg, TEMPLATES)


def test_waves_follow_the_design(plan):
    assert plan.waves() == [
        ["rstudio-bootstrap"],
        ["rstudio-central", "rstudio-data", "rstudio-dev-zone", "rstudio-prod-zone"],
        ["rstudio-dev-data", "rstudio-network", "rstudio-prod-data"],
        ["rstudio-dev", "rstudio-prod"],
    ]


def test_instance_waits_for_its_zone_the_network_its_data_and_central(plan):
    assert plan.nodes["rstudio-prod"].depends_on == (
        "rstudio-central", "rstudio-network", "rstudio-prod-data", "rstudio-prod-zone",
    )  # fmt: skip


def test_network_name_servers_come_from_each_zone_stack_in_its_account(plan, cfg):
    [override] = plan.nodes["rstudio-network"].overrides
    assert (override.account, override.region) == (cfg.accounts.network, cfg.default_region)
    assert dict(override.parameters) == {
        "DevNameServers": OutputRef("rstudio-dev-zone", "NameServers", "555555555555", "eu-west-1"),
        "ProdNameServers": OutputRef("rstudio-prod-zone", "NameServers", "666666666666", "eu-west-1"),
    }


def test_every_parameter_the_network_template_declares_is_fed(plan):
    node = plan.nodes["rstudio-network"]
    fed = {key for override in node.overrides for key, _ in override.parameters}
    declared = {line.strip().rstrip(":") for line in node.template_body.split("Resources:")[0].splitlines()
                if line.startswith("  ") and not line.startswith("   ") and line.strip().endswith("NameServers:")}
    assert declared and fed == declared


def test_service_managed_targets_filter_the_bootstrap_ous_down_to_one_account(plan, cfg):
    bootstrap = plan.nodes["rstudio-bootstrap"]
    assert bootstrap.targets.organizational_units == cfg.stacksets.bootstrap.organizational_units
    assert bootstrap.targets.accounts == () and bootstrap.auto_deployment
    data = plan.nodes["rstudio-prod-data"]
    assert data.targets.accounts == (cfg.accounts.data,)
    assert data.targets.organizational_units == cfg.stacksets.bootstrap.organizational_units
    assert data.call_as is not None and data.call_as.value == "delegated_admin"


def test_self_managed_bootstrap_targets_every_account_the_config_names(example_data):
    example_data["stacksets"] = {"permission_model": "self_managed", "bootstrap": {"accounts": ["777777777777"]}}
    plan = build_plan(parse_config(example_data), TEMPLATES)
    bootstrap = plan.nodes["rstudio-bootstrap"]
    assert bootstrap.targets.accounts == (
        "222222222222", "333333333333", "444444444444", "555555555555", "666666666666", "777777777777",
    )  # fmt: skip
    assert bootstrap.targets.organizational_units == () and not bootstrap.auto_deployment
    assert plan.nodes["rstudio-central"].call_as is None


def test_large_templates_are_marked_for_s3(plan):
    assert plan.nodes["rstudio-prod"].needs_s3
    assert not plan.nodes["rstudio-network"].needs_s3


def test_template_hash_is_the_committed_bytes(plan):
    import hashlib

    node = plan.nodes["rstudio-central"]
    assert node.template_sha256 == hashlib.sha256((TEMPLATES / node.template_file).read_bytes()).hexdigest()


def test_reversed_plan_destroys_instances_first(plan):
    assert plan.reversed().waves()[0] == ["rstudio-dev", "rstudio-prod"]
    assert plan.reversed().waves()[-1] == ["rstudio-bootstrap"]


def test_only_pulls_in_dependencies(plan):
    assert sorted(plan.only(["rstudio-network"]).nodes) == [
        "rstudio-bootstrap", "rstudio-dev-zone", "rstudio-network", "rstudio-prod-zone",
    ]  # fmt: skip
    assert sorted(plan.only(["rstudio-network"], with_dependencies=False).nodes) == ["rstudio-network"]
    with pytest.raises(PlanError, match="unknown StackSet"):
        plan.only(["rstudio-nope"])


def test_a_cycle_is_named(plan):
    bootstrap = replace(plan.nodes["rstudio-bootstrap"], depends_on=("rstudio-prod",))
    cyclic = replace(plan, nodes={**plan.nodes, "rstudio-bootstrap": bootstrap})
    with pytest.raises(PlanError, match="cycle: .*rstudio-bootstrap"):
        cyclic.waves()


def test_missing_template_says_to_render(cfg, tmp_path):
    with pytest.raises(PlanError, match="run `python deploy.py render`"):
        build_plan(cfg, tmp_path)


def test_operation_preferences_follow_the_rollout(cfg):
    assert operation_preferences(cfg.stacksets.rollout, ("eu-west-1",)) == {
        "RegionConcurrencyType": "PARALLEL", "ConcurrencyMode": "SOFT_FAILURE_TOLERANCE",
        "MaxConcurrentPercentage": 25, "FailureTolerancePercentage": 10,
    }  # fmt: skip
    assert operation_preferences(cfg.stacksets.rollout, ("us-east-1", "eu-west-1"))["RegionOrder"] == [
        "us-east-1", "eu-west-1",
    ]  # fmt: skip
