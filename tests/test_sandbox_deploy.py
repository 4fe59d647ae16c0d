"""End to end in the sandbox: the real executor rolls every committed template out over the AWS model, with the image
step building through CodeBuild in the central account, and the rehearsal kept between commands."""

from __future__ import annotations

from pathlib import Path

import pytest

from stacksets.executor import Executor, Options, State
from stacksets.plan import build_plan
from stacksets.sandbox import Sandbox, SandboxError
from tests.conftest import TEMPLATES

pytestmark = pytest.mark.slow
EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "scenarios"


def executor(sandbox: Sandbox) -> Executor:
    assert sandbox.operations_file is not None
    return Executor(sandbox.clients(), options=Options(state_path=sandbox.operations_file), clock=sandbox.clock,
                    sleep=sandbox.clock.sleep)  # fmt: skip


@pytest.fixture(scope="module")
def rollout(cfg, tmp_path_factory):
    state = Path(tmp_path_factory.mktemp("sandbox"))
    plan = build_plan(cfg, TEMPLATES)
    with Sandbox(cfg, state_dir=state) as sandbox:
        first = executor(sandbox).deploy(plan)
    return state, plan, first


def test_first_deploy_creates_every_stackset_and_instance(rollout, cfg):
    state, plan, first = rollout
    assert first.ok, {name: result.message for name, result in first.results.items()}
    assert {name: result.state for name, result in first.results.items()} == dict.fromkeys(plan.steps(),
                                                                                            State.SUCCEEDED)
    with Sandbox(cfg, state_dir=state) as sandbox:
        rows = executor(sandbox).status(plan)
    instances = [row for row in rows if row.account and row.stackset != "rstudio-images"]
    assert instances and all(row.detailed_status == "SUCCEEDED" for row in instances)
    assert [(row.detailed_status, row.status) for row in rows if row.stackset == "rstudio-images"] == [
        ("rstudio", "PRESENT"), ("shiny", "PRESENT"), ("bastion", "PRESENT")]  # fmt: skip


def test_the_rehearsal_shows_the_config_accounts_and_simulated_time(rollout, cfg):
    state, _, first = rollout
    with Sandbox(cfg, state_dir=state) as sandbox:
        sets = sandbox.model.world.stacksets.sets
        accounts = {account for s in sets.values() for account, _ in s.instances}
    assert accounts >= {cfg.accounts.central, cfg.accounts.network, cfg.accounts.data, "555555555555", "666666666666"}
    # every operation took simulated minutes, none of them real ones
    assert first.elapsed >= 600


def test_images_are_built_before_the_instances_start(rollout):
    _, _, first = rollout
    built = [entry for entry in first.timeline if entry.operation.startswith("build ")]
    instances = [entry for entry in first.timeline if entry.stackset in ("rstudio-dev", "rstudio-prod")]
    assert len(built) == 3 and max(entry.end for entry in built) <= min(entry.start for entry in instances)


def test_each_delegation_carries_its_zone_name_servers(rollout, cfg):
    state, _, _ = rollout
    with Sandbox(cfg, state_dir=state) as sandbox:
        sets = {name: s for (_, _, name), s in sandbox.model.world.stacksets.sets.items()}
    delegated = set()
    for instance in cfg.instances:
        [(place, delegation)] = sets[f"rstudio-{instance}-delegation"].instances.items()
        [zone] = sets[f"rstudio-{instance}-zone"].instances.values()
        assert place == (cfg.accounts.network, cfg.default_region)
        name_servers = zone.stack.outputs["NameServers"]
        assert delegation.stack.parameters["NameServers"] == name_servers and delegation.overrides == {}
        assert delegation.stack.resources["Delegation"].properties["ResourceRecords"] == name_servers.split(",")
        delegated.add(name_servers)
    assert len(delegated) == len(cfg.instances) == 2


def test_each_instance_stack_has_its_topic_subscriptions_and_alarms_wired_to_what_they_watch(rollout, cfg):
    state, _, _ = rollout
    with Sandbox(cfg, state_dir=state) as sandbox:
        sets = {name: s for (_, _, name), s in sandbox.model.world.stacksets.sets.items()}
    for instance, settings in cfg.instances.items():
        [stack_instance] = sets[f"rstudio-{instance}"].instances.values()
        live = stack_instance.stack.resources
        region = cfg.region_of(instance)
        topic = f"arn:aws:sns:{region}:{settings.account}:rstudio-{instance}-alarms"
        assert live["AlarmTopic"].physical_id == topic
        emails = [r.properties["Endpoint"] for r in live.values() if r.resource_type == "AWS::SNS::Subscription"]
        assert sorted(emails) == sorted(settings.alerts.emails)
        alarms = {r.physical_id: r.properties for r in live.values() if r.resource_type == "AWS::CloudWatch::Alarm"}
        assert alarms and all(a["AlarmActions"] == a["OKActions"] == [topic] for a in alarms.values())
        shiny = alarms[f"rstudio-{instance}-shiny-unavailable"]
        [desired] = [q for q in shiny["Metrics"] if q["Id"] == "desired"]
        names = {d["Name"]: d["Value"] for d in desired["MetricStat"]["Metric"]["Dimensions"]}
        assert names == {"ClusterName": f"rstudio-{instance}", "ServiceName": live["ShinyService"].attributes["Name"]}
        [target] = live["DataSyncFailureRule"].properties["Targets"]
        assert target["Arn"] == topic


def test_a_second_deploy_of_the_same_plan_changes_nothing(rollout, cfg):
    state, plan, _ = rollout
    with Sandbox(cfg, state_dir=state) as sandbox:
        again = executor(sandbox).deploy(plan)
    assert again.ok and not again.calls, dict(again.calls)


def test_another_scenario_cannot_reuse_the_state(rollout, cfg):
    state, _, _ = rollout
    with pytest.raises(SandboxError, match="another --sandbox-state"):
        Sandbox(cfg, EXAMPLES / "failing-create.yaml", state_dir=state).__enter__()
