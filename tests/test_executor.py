"""The executor on the AWS model: ordering, idempotence, faults, resume, destroy, CallAs.

Real boto3 clients answer from `stacksets.awsmodel`; operations run in simulated time on the model's clock, which is
also the executor's sleep, so nothing here really waits. One full rollout is deployed per module and copied for the
tests that start from a deployed organization.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ReadTimeoutError

from stacksets.aws import AwsError
from stacksets.awsmodel.model import AwsModel
from stacksets.config import CallAs, Config, PermissionModel, parse_config
from stacksets.executor import Event, Report, State, retained_resources
from stacksets.plan import Plan, build_plan
from tests.awsmodel_helpers import (
    SimClock,
    clients_for,
    copy_model,
    executor_for,
    live_stackset,
    model_for,
    on_the_wire,
    scenario,
)
from tests.conftest import TEMPLATES

WORKLOADS, SHARED, TEAMS = "ou-ab12-11111111", "ou-ab12-22222222", "ou-ab12-33333333"
REGION = "eu-west-1"
# The instance accounts sit one OU below a bootstrap OU, so target expansion must recurse.
NESTED = {"organizational_units": {TEAMS: {"parent": SHARED, "name": "teams"}},
          "accounts": {"555555555555": {"ou": TEAMS}, "666666666666": {"ou": TEAMS}}}  # fmt: skip
# The admin account is a member account (a delegated administrator) in the workloads OU: it gets the bootstrap too.
ALL_ACCOUNTS = ["111111111111", "222222222222", "333333333333", "444444444444", "555555555555", "666666666666"]
# Generous request rates where a test counts attempts or sleeps: the model's own throttling would add some.
UNTHROTTLED = {"limits": {"api_burst": 10_000}}


@pytest.fixture(scope="module")
def plan(cfg: Config) -> Plan:
    return build_plan(cfg, TEMPLATES)


@pytest.fixture(scope="module")
def deployed(cfg: Config, plan: Plan, tmp_path_factory: pytest.TempPathFactory) -> tuple[AwsModel, Report]:
    """The first rollout of the whole plan. Read it only; tests that go on from there take `after_deploy`."""
    model = model_for(cfg, scenario(**NESTED))
    return model, executor_for(model, cfg, tmp_path_factory.mktemp("first")).deploy(plan)


@pytest.fixture
def after_deploy(deployed: tuple[AwsModel, Report]) -> AwsModel:
    return copy_model(deployed[0])


@pytest.fixture
def fresh(cfg: Config) -> AwsModel:
    return model_for(cfg, scenario(**NESTED))


def first(events: list[Event], stackset: str, state: State) -> int:
    return next(i for i, e in enumerate(events) if e.stackset == stackset and e.state is state)


def with_preferences(plan: Plan, name: str, **preferences: Any) -> Plan:
    node = plan.nodes[name]
    return Plan({**plan.nodes, name: replace(node, operation_preferences={**node.operation_preferences,
                                                                            **preferences})}, plan.images)  # fmt: skip


def test_first_deploy_creates_everything_in_dependency_order(deployed, plan: Plan) -> None:
    model, report = deployed

    assert report.ok, {n: r.message for n, r in report.results.items()}
    assert {name for (_, _, name) in model.world.stacksets.sets} == set(plan.nodes)
    created = [kw["StackSetName"] for kw in model.calls_for("create_stack_set")]
    for name, node in plan.without_images().nodes.items():
        for dep in node.depends_on:
            assert created.index(dep) < created.index(name), f"{name} created before its dependency {dep}"
    # the bootstrap went to every account of both OUs, the nested OU included
    assert sorted(live_stackset(model, "rstudio-bootstrap").instances) == [(a, REGION) for a in ALL_ACCOUNTS]
    assert report.calls["create_stack_set"] == 14 and report.calls["create_stack_instances"] == 14
    # the compute StackSets' instances, created with the load balancer unprotected, then switched back on
    assert report.calls["update_stack_instances"] == 2


def test_new_instances_start_unprotected_and_get_their_deletion_protection_once_created(deployed) -> None:
    model, _ = deployed
    unprotected = [{"ParameterKey": "LoadBalancerDeletionProtection", "ParameterValue": "false"}]
    for name, account in (("rstudio-dev", "555555555555"), ("rstudio-prod", "666666666666")):
        (create,) = [kw for kw in model.calls_for("create_stack_instances") if kw["StackSetName"] == name]
        assert create["ParameterOverrides"] == unprotected
        (protect,) = [kw for kw in model.calls_for("update_stack_instances") if kw["StackSetName"] == name]
        assert protect["ParameterOverrides"] == []  # the planned overrides: none, so the StackSet's value applies
        assert protect["DeploymentTargets"]["Accounts"] == [account]
        instance = live_stackset(model, name).instances[(account, REGION)]
        assert instance.overrides == {} and instance.stack.parameters["LoadBalancerDeletionProtection"] == "true"
    # a StackSet without that parameter is created without the override and never updated
    assert "ParameterOverrides" not in next(kw for kw in model.calls_for("create_stack_instances")
                                            if kw["StackSetName"] == "rstudio-dev-storage")  # fmt: skip


def test_zone_name_servers_flow_into_each_delegation(deployed) -> None:
    model, _ = deployed

    delegated = {}
    for instance, account in (("dev", "555555555555"), ("prod", "666666666666")):
        name = f"rstudio-{instance}-delegation"
        (create,) = [kw for kw in model.calls_for("create_stack_set") if kw["StackSetName"] == name]
        parameters = {p["ParameterKey"]: p["ParameterValue"] for p in create["Parameters"]}
        zone = live_stackset(model, f"rstudio-{instance}-zone").instances[(account, REGION)].stack
        assert parameters == {"NameServers": zone.outputs["NameServers"]}
        (call,) = [kw for kw in model.calls_for("create_stack_instances") if kw["StackSetName"] == name]
        assert call["DeploymentTargets"] == {"OrganizationalUnitIds": [WORKLOADS, SHARED], "Accounts": ["333333333333"],
                                             "AccountFilterType": "INTERSECTION"}  # fmt: skip
        assert sorted(live_stackset(model, name).instances) == [("333333333333", REGION)]
        delegated[instance] = parameters["NameServers"]
    assert delegated["dev"] != delegated["prod"]


def test_storage_outputs_flow_into_the_compute_parameters(deployed) -> None:
    model, _ = deployed

    for instance, account, bastion in (("dev", "555555555555", False), ("prod", "666666666666", True)):
        storage = live_stackset(model, f"rstudio-{instance}-storage").instances[(account, REGION)].stack
        wanted = ["InstanceKeyArn", "FileSystemId", "PasswordSecretArns", "CookieKeySecretArns"] + \
            (["BastionKeySecretArn"] if bastion else [])  # fmt: skip
        (create,) = [kw for kw in model.calls_for("create_stack_set") if kw["StackSetName"] == f"rstudio-{instance}"]
        parameters = {p["ParameterKey"]: p["ParameterValue"] for p in create["Parameters"]}
        assert parameters == {key: storage.outputs[key] for key in wanted}
        assert parameters["FileSystemId"].startswith("fs-")


def test_second_deploy_makes_no_mutating_call(after_deploy: AwsModel, cfg: Config, plan: Plan,
                                              tmp_path: Path) -> None:  # fmt: skip
    again = executor_for(after_deploy, cfg, tmp_path)
    assert not any(d.changed for d in again.diff(plan))
    report = again.deploy(plan)

    assert report.ok
    assert after_deploy.mutating_calls() == {}
    assert sum(report.calls.values()) == 0
    assert {r.state for r in report.results.values()} == {State.UNCHANGED}


def test_template_change_updates_only_that_stackset(after_deploy: AwsModel, cfg: Config, plan: Plan,
                                                    tmp_path: Path) -> None:  # fmt: skip
    central = plan.nodes["rstudio-central"]
    changed = Plan({**plan.nodes, central.name: replace(central, template_body=central.template_body + "# v2\n")},
                   plan.images)  # fmt: skip

    diffs = {d.name: d for d in executor_for(after_deploy, cfg, tmp_path).diff(changed)}
    assert diffs["rstudio-central"].template_changed and not diffs["rstudio-central"].create
    assert [n for n, d in diffs.items() if d.changed] == ["rstudio-central"]

    report = executor_for(after_deploy, cfg, tmp_path).deploy(changed)
    assert report.ok
    assert set(report.calls) == {"update_stack_set"}
    # one operation, though the model's throttling may have made the call retry under the same id
    updates = after_deploy.calls_for("update_stack_set")
    assert {kw["StackSetName"] for kw in updates} == {"rstudio-central"}
    assert len({kw["OperationId"] for kw in updates}) == 1
    assert live_stackset(after_deploy, "rstudio-central").body.endswith("# v2\n")
    assert report.results["rstudio-central"].state is State.SUCCEEDED
    assert report.results["rstudio-data"].state is State.UNCHANGED


def test_failed_operation_skips_dependents_with_the_reason(fresh: AwsModel, cfg: Config, plan: Plan,
                                                           tmp_path: Path) -> None:  # fmt: skip
    fresh.fail_resource("rstudio-dev-zone", "555555555555", "HostedZone", reason="HostedZone limit exceeded")
    report = executor_for(fresh, cfg, tmp_path).deploy(plan)

    assert not report.ok
    zone = report.results["rstudio-dev-zone"]
    assert zone.state is State.FAILED and "FAILED" in zone.message
    (failure,) = zone.failures
    assert (failure.account, failure.region) == ("555555555555", REGION)
    assert "HostedZone" in failure.reason
    # the first failing stack events, read through the reader role the bootstrap created in that account
    assert failure.events[0] == "HostedZone (AWS::Route53::HostedZone) CREATE_FAILED: HostedZone limit exceeded"
    assert report.results["rstudio-dev-delegation"].state is State.SKIPPED
    assert report.results["rstudio-dev-delegation"].message == "dependency rstudio-dev-zone failed"
    assert report.results["rstudio-dev"].state is State.SKIPPED
    assert report.results["rstudio-dev"].message == "dependency rstudio-dev-delegation was skipped"  # first blocked one
    assert live_stackset(fresh, "rstudio-dev-delegation") is None and live_stackset(fresh, "rstudio-dev") is None
    # independent work still ran: one delegation per instance, so the other instance is not held up
    for name in ("rstudio-dev-storage", "rstudio-prod-zone", "rstudio-prod-delegation", "rstudio-prod"):
        assert report.results[name].state is State.SUCCEEDED, (name, report.results[name].message)


def test_failed_instance_inside_tolerance_is_reported(fresh: AwsModel, cfg: Config, plan: Plan,
                                                      tmp_path: Path) -> None:  # fmt: skip
    fresh.fail_resource("rstudio-bootstrap", "444444444444", "DeployReaderRole",
                        reason="rstudio-deploy-reader already exists in stack arn:aws:cloudformation:...")
    tolerant = with_preferences(plan, "rstudio-bootstrap", FailureTolerancePercentage=50)
    report = executor_for(fresh, cfg, tmp_path).deploy(tolerant)

    (operation,) = live_stackset(fresh, "rstudio-bootstrap").operations.values()
    assert operation.status == "SUCCEEDED"  # one failure of six is inside the tolerance
    bootstrap = report.results["rstudio-bootstrap"]
    assert bootstrap.state is State.FAILED  # although the operation itself SUCCEEDED
    (failure,) = bootstrap.failures
    assert failure.account == "444444444444" and "DeployReaderRole" in failure.reason
    # the stack that failed is the one that creates the reader role, so its events cannot be read in that account
    assert len(failure.events) == 1 and "unavailable" in failure.events[0]
    assert "role/rstudio-deploy-reader" in failure.events[0]
    assert {r.state for n, r in report.results.items() if n != "rstudio-bootstrap"} == {State.SKIPPED}


def test_operation_in_progress_is_waited_for_and_retried(cfg: Config, plan: Plan, tmp_path: Path) -> None:
    model = model_for(cfg, scenario(**UNTHROTTLED))
    # someone else's operation on the StackSet: the model only refuses like this without ManagedExecution
    model.fail_next("create_stack_instances", "OperationInProgressException", times=2)
    report = executor_for(model, cfg, tmp_path, poll_s=10).deploy(plan.only(["rstudio-bootstrap"]))

    assert report.ok
    calls = [call for call in model.log if call.api == "create_stack_instances"]
    assert len(calls) == 3
    assert calls[0].params["OperationId"] == calls[2].params["OperationId"]  # the same client id: idempotent retry
    # exponential backoff, capped at 15 s while only a few operations are in flight
    assert [later.at - earlier.at for earlier, later in zip(calls, calls[1:])] == [10, 15]


def test_queued_operations_are_waited_for(after_deploy: AwsModel, cfg: Config, plan: Plan, tmp_path: Path) -> None:
    # a colleague's drift detection still runs on rstudio-central, so ManagedExecution queues our update behind it
    clients_for(after_deploy, REGION).client("cloudformation").detect_stack_set_drift(
        StackSetName="rstudio-central", CallAs="DELEGATED_ADMIN")
    central = plan.nodes["rstudio-central"]
    changed = Plan({**plan.nodes, central.name: replace(central, template_body=central.template_body + "# v2\n")},
                   plan.images)  # fmt: skip
    events: list[Event] = []
    report = executor_for(after_deploy, cfg, tmp_path, events).deploy(changed)

    assert report.ok, report.results["rstudio-central"].message
    said = [e.message for e in events if e.stackset == "rstudio-central"]
    assert said.index("queued") < said.index("running")
    assert report.results["rstudio-central"].state is State.SUCCEEDED


def test_throttling_burst_is_survived_with_bounded_backoff(cfg: Config, plan: Plan, tmp_path: Path) -> None:
    model = model_for(cfg, scenario(**UNTHROTTLED))
    model.fail_next("describe_stack_set", "Throttling", times=4)
    model.fail_next("create_stack_instances", "Throttling", times=3)
    report = executor_for(model, cfg, tmp_path, max_workers=1).deploy(plan.only(["rstudio-bootstrap"]))

    assert report.ok
    assert model.clock.sleeps[:4] == [0.5, 1.0, 2.0, 4.0]  # base 1 s doubling, full jitter (random fixed at 0.5)
    creates = model.calls_for("create_stack_instances")
    assert len(creates) == 4 and len({kw["OperationId"] for kw in creates}) == 1


def test_endless_throttling_gives_up_after_the_retry_budget(cfg: Config, plan: Plan, tmp_path: Path) -> None:
    model = model_for(cfg)
    model.fail_next("create_stack_set", "Throttling", times=10**6)
    report = executor_for(model, cfg, tmp_path).deploy(plan.only(["rstudio-bootstrap"]))

    bootstrap = report.results["rstudio-bootstrap"]
    assert bootstrap.state is State.FAILED
    assert "create_stack_set was throttled" in bootstrap.message
    assert model.clock() == pytest.approx(600)  # 600 s of backoff on this one call, then no more
    attempts = report.calls_by_stackset["rstudio-bootstrap"]["create_stack_set"]
    assert attempts == model.calls["create_stack_set"] > 8  # every attempt counted, far beyond a fixed count


def test_never_ending_operation_hits_the_time_limit(cfg: Config, plan: Plan, tmp_path: Path) -> None:
    model = model_for(cfg)
    model.never_end("rstudio-bootstrap")
    report = executor_for(model, cfg, tmp_path, timeout_s=900).deploy(plan)

    bootstrap = report.results["rstudio-bootstrap"]
    assert bootstrap.state is State.FAILED and "900 s time limit" in bootstrap.message
    assert model.clock() == pytest.approx(900)
    assert max(model.clock.sleeps) == 15  # with one operation in flight, polling backs off to 15 s at most
    # the operation id stays in the state file for the next run to reattach
    state = json.loads((tmp_path / "state.json").read_text())
    assert state["operations"]["rstudio-bootstrap"]["action"] == "create_stack_instances"


def test_interrupted_run_reattaches_instead_of_starting_again(cfg: Config, plan: Plan, tmp_path: Path) -> None:
    # six accounts one at a time (25 % of 6 rounds down to 1), 100 s each: 600 s, far beyond the first run's limit
    model = model_for(cfg, scenario(durations={"rstudio-bootstrap": 100}))
    bootstrap_only = plan.only(["rstudio-bootstrap"])
    executor_for(model, cfg, tmp_path, timeout_s=120).deploy(bootstrap_only)  # "interrupted": gave up, still RUNNING
    recorded = json.loads((tmp_path / "state.json").read_text())["operations"]["rstudio-bootstrap"]["operation_id"]
    operation = live_stackset(model, "rstudio-bootstrap").operations[recorded]
    assert operation.status == "RUNNING"

    events: list[Event] = []
    report = executor_for(model, cfg, tmp_path, events).deploy(bootstrap_only)

    assert report.ok and report.results["rstudio-bootstrap"].state is State.SUCCEEDED
    assert model.calls["create_stack_instances"] == 1 and model.calls["create_stack_set"] == 1
    assert report.results["rstudio-bootstrap"].operations == [recorded]
    assert any(e.message == f"reattached to {recorded}" for e in events)
    assert operation.status == "SUCCEEDED"
    assert json.loads((tmp_path / "state.json").read_text())["operations"] == {}


def test_operation_id_already_taken_means_reattach(cfg: Config, plan: Plan, tmp_path: Path) -> None:
    """A call whose answer was lost and that is retried with the same id waits for the first one."""
    model = model_for(cfg)
    lost = on_the_wire("cloudformation.CreateStackInstances", [ReadTimeoutError(endpoint_url="https://cfn")],
                       lost_answer=True)  # fmt: skip
    clients = clients_for(model, cfg.default_region, lost)
    report = executor_for(model, cfg, tmp_path, clients=clients).deploy(plan.only(["rstudio-bootstrap"]))

    assert report.ok, report.results["rstudio-bootstrap"].message
    assert model.calls["create_stack_instances"] == 2  # accepted, answer lost, retried under the same id
    assert len(live_stackset(model, "rstudio-bootstrap").operations) == 1  # no second operation


def test_destroy_goes_in_reverse_order_instances_before_sets(fresh: AwsModel, cfg: Config, plan: Plan,
                                                             tmp_path: Path) -> None:  # fmt: skip
    # everything but the compute, whose load balancers refuse deletion (the next test)
    plan = plan.only(["rstudio-dev-delegation", "rstudio-prod-delegation", "rstudio-dev-data", "rstudio-prod-data",
                      "rstudio-dev-storage", "rstudio-prod-storage", "rstudio-logs", "rstudio-central"])  # fmt: skip
    assert not {"rstudio-dev", "rstudio-prod"} & set(plan.nodes)
    executor_for(fresh, cfg, tmp_path).deploy(plan)
    calls_before = len(fresh.log)
    report = executor_for(fresh, cfg, tmp_path).destroy(plan)

    assert report.ok, {n: r.message for n, r in report.results.items()}
    assert fresh.world.stacksets.sets == {}
    deletes = [(call.api, call.params["StackSetName"]) for call in fresh.log[calls_before:]
               if call.api in ("delete_stack_instances", "delete_stack_set")]  # fmt: skip
    set_order = [name for api, name in deletes if api == "delete_stack_set"]
    assert sorted(set_order) == sorted(plan.nodes)
    for name, node in plan.nodes.items():
        assert deletes.index(("delete_stack_instances", name)) < deletes.index(("delete_stack_set", name))
        for dep in node.depends_on:
            assert set_order.index(name) < set_order.index(dep), f"{dep} deleted before its dependent {name}"
    bootstrap_delete = next(kw for kw in fresh.calls_for("delete_stack_instances")
                            if kw["StackSetName"] == "rstudio-bootstrap")  # fmt: skip
    assert bootstrap_delete["RetainStacks"] is False
    assert bootstrap_delete["DeploymentTargets"]["Accounts"] == ALL_ACCOUNTS
    assert ("AWS::Route53::HostedZone", "HostedZone") in report.results["rstudio-dev-zone"].retained
    assert {("AWS::EFS::FileSystem", "FileSystem"), ("AWS::KMS::Key", "InstanceKey")} <= \
        set(report.results["rstudio-prod-storage"].retained)  # fmt: skip


def test_destroy_lifts_the_load_balancers_deletion_protection_first(after_deploy: AwsModel, cfg: Config,
                                                                   plan: Plan, tmp_path: Path) -> None:  # fmt: skip
    """The instance templates protect their load balancers from deletion, which CloudFormation cannot get past: a
    destroy first updates the instance StackSet with the protection off, then deletes, and everything goes."""
    report = executor_for(after_deploy, cfg, tmp_path).destroy(plan)

    assert report.ok, {name: result.message for name, result in report.results.items()}
    lifts = [call.params for call in after_deploy.log if call.api == "update_stack_set"]
    assert sorted(params["StackSetName"] for params in lifts) == ["rstudio-dev", "rstudio-prod"]
    assert all({"ParameterKey": "LoadBalancerDeletionProtection", "ParameterValue": "false"} in params["Parameters"]
               and params["UsePreviousTemplate"] for params in lifts)  # fmt: skip
    assert live_stackset(after_deploy, "rstudio-bootstrap") is None


def test_call_as_on_every_stacksets_call(deployed, after_deploy: AwsModel, cfg: Config, plan: Plan,
                                         tmp_path: Path) -> None:  # fmt: skip
    executor_for(after_deploy, cfg, tmp_path).status(plan)

    stackset_calls = [call for call in deployed[0].log + after_deploy.log if "StackSetName" in call.params]
    assert {call.api for call in after_deploy.log} >= {"describe_stack_set", "list_stack_instances"}
    assert all(call.params.get("CallAs") == "DELEGATED_ADMIN" for call in stackset_calls)


def test_self_managed_passes_accounts_and_no_call_as(example_data: dict, tmp_path: Path) -> None:
    example_data["stacksets"] = {"permission_model": "self_managed", "call_as": "self"}
    cfg = parse_config(example_data)
    plan = build_plan(cfg, TEMPLATES)
    model = model_for(cfg)
    assert plan.nodes["rstudio-central"].permission_model is PermissionModel.self_managed
    report = executor_for(model, cfg, tmp_path).deploy(plan)

    assert report.ok, {n: r.message for n, r in report.results.items()}
    assert all("CallAs" not in call.params for call in model.log)
    central = next(kw for kw in model.calls_for("create_stack_instances") if kw["StackSetName"] == "rstudio-central")
    assert central["Accounts"] == ["222222222222"] and "DeploymentTargets" not in central
    assert model.calls_for("create_stack_set")[0]["PermissionModel"] == "SELF_MANAGED"
    assert "AutoDeployment" not in model.calls_for("create_stack_set")[0]
    # self-managed StackSets live in the admin account itself
    assert {owner for (owner, _, _) in model.world.stacksets.sets} == {cfg.accounts.admin}


def test_each_stackset_is_rolled_out_with_its_own_preferences(example_data: dict, tmp_path: Path) -> None:
    example_data["stacksets"]["rollout"]["overrides"] = {
        "bootstrap": {"max_concurrent_count": 50, "failure_tolerance_percentage": 20},
        "zone": {"region_concurrency": "sequential"},
        "rstudio-dev-delegation": {"concurrency_mode": "strict_failure_tolerance", "max_concurrent_count": 1},
    }
    cfg = parse_config(example_data)
    plan = build_plan(cfg, TEMPLATES).only(["rstudio-dev-delegation"])
    model = model_for(cfg, scenario(**NESTED))
    report = executor_for(model, cfg, tmp_path).deploy(plan)

    assert report.ok, {n: r.message for n, r in report.results.items()}
    cfn = clients_for(model, REGION).client("cloudformation")
    sent = {call["StackSetName"]: call for call in model.calls_for("create_stack_instances")}
    assert sorted(sent) == ["rstudio-bootstrap", "rstudio-dev-delegation", "rstudio-dev-zone"]
    for name, call in sent.items():
        # what botocore let through, as the model recorded it for the operation
        recorded = cfn.describe_stack_set_operation(StackSetName=name, OperationId=call["OperationId"],
                                                    CallAs="DELEGATED_ADMIN")["StackSetOperation"]  # fmt: skip
        assert call["OperationPreferences"] == plan.nodes[name].operation_preferences, name
        assert recorded["OperationPreferences"] == call["OperationPreferences"], name
    assert sent["rstudio-bootstrap"]["OperationPreferences"]["MaxConcurrentCount"] == 50
    assert sent["rstudio-dev-zone"]["OperationPreferences"]["RegionConcurrencyType"] == "SEQUENTIAL"
    assert sent["rstudio-dev-delegation"]["OperationPreferences"]["ConcurrencyMode"] == "STRICT_FAILURE_TOLERANCE"
    assert len({json.dumps(call["OperationPreferences"], sort_keys=True) for call in sent.values()}) == 3


def test_service_managed_bootstrap_auto_deploys(deployed, plan: Plan) -> None:
    assert plan.nodes["rstudio-bootstrap"].call_as is CallAs.delegated_admin
    create = deployed[0].calls_for("create_stack_set")[0]

    assert create["StackSetName"] == "rstudio-bootstrap"
    assert create["AutoDeployment"] == {"Enabled": True, "RetainStacksOnAccountRemoval": False}
    assert create["ManagedExecution"] == {"Active": True}
    assert create["PermissionModel"] == "SERVICE_MANAGED"


def test_independent_stacksets_overlap(cfg: Config, plan: Plan, tmp_path: Path) -> None:
    model = model_for(cfg, clock=SimClock())
    events: list[Event] = []
    report = executor_for(model, cfg, tmp_path, events).deploy(plan.only(["rstudio-central", "rstudio-data"]))

    assert report.ok
    # a one-at-a-time run would see rstudio-central succeed before rstudio-data starts
    started = max(first(events, "rstudio-central", State.RUNNING), first(events, "rstudio-data", State.RUNNING))
    ended = min(first(events, "rstudio-central", State.SUCCEEDED), first(events, "rstudio-data", State.SUCCEEDED))
    assert started < ended


def test_readiness_not_waves(cfg: Config, plan: Plan, tmp_path: Path) -> None:
    """rstudio-dev-data needs only rstudio-data: it starts while the dev zone (same wave as data) still runs."""
    model = model_for(cfg, scenario(durations={"default": 60, "rstudio-dev-zone": 3600}), clock=SimClock())
    events: list[Event] = []
    report = executor_for(model, cfg, tmp_path, events).deploy(plan.only(["rstudio-dev-data", "rstudio-dev-zone"]))

    assert report.ok
    assert first(events, "rstudio-dev-data", State.RUNNING) < first(events, "rstudio-dev-zone", State.SUCCEEDED)


def test_large_template_goes_through_the_staging_bucket(deployed, plan: Plan) -> None:
    model, _ = deployed
    prod = plan.nodes["rstudio-prod"]
    assert prod.needs_s3

    create = next(kw for kw in model.calls_for("create_stack_set") if kw["StackSetName"] == "rstudio-prod")
    bucket = "rstudio-fargate-templates-111111111111-eu-west-1"
    key = f"templates/{prod.template_sha256}.yaml"
    assert create["TemplateURL"] == f"https://{bucket}.s3.eu-west-1.amazonaws.com/{key}"
    assert "TemplateBody" not in create
    assert model.world.s3.buckets[bucket].objects[key] == prod.template_body.encode()
    assert live_stackset(model, "rstudio-prod").body == prod.template_body


def test_diff_shows_unresolved_outputs_and_prune(fresh: AwsModel, cfg: Config, plan: Plan, tmp_path: Path) -> None:
    diffs = {d.name: d for d in executor_for(fresh, cfg, tmp_path).diff(plan)}
    assert diffs["rstudio-dev-delegation"].parameters["NameServers"].startswith("(from <rstudio-dev-zone ")
    assert not diffs["rstudio-dev-delegation"].exists
    assert diffs["rstudio-dev"].parameters["FileSystemId"].startswith("(from <rstudio-dev-storage ")
    assert fresh.mutating_calls() == {}

    # a zone, not central: central's rendered template names its bucket after the central account
    zone = plan.only(["rstudio-dev-zone"])
    executor_for(fresh, cfg, tmp_path).deploy(zone)
    node = zone.nodes["rstudio-dev-zone"]
    moved = Plan({**zone.nodes, node.name: replace(node, targets=replace(node.targets, accounts=("333333333333",)))})
    diffs = {d.name: d for d in executor_for(fresh, cfg, tmp_path).diff(moved)}
    assert diffs["rstudio-dev-zone"].create == (("333333333333", REGION),)
    assert diffs["rstudio-dev-zone"].orphaned == (("555555555555", REGION),) and not diffs["rstudio-dev-zone"].delete

    report = executor_for(fresh, cfg, tmp_path, prune=True).deploy(moved)
    assert report.ok, report.results["rstudio-dev-zone"].message
    assert report.calls["delete_stack_instances"] == 1
    assert sorted(live_stackset(fresh, "rstudio-dev-zone").instances) == [("333333333333", REGION)]


def test_status_rows(fresh: AwsModel, cfg: Config, plan: Plan, tmp_path: Path) -> None:
    executor_for(fresh, cfg, tmp_path).deploy(plan.only(["rstudio-central"]))
    rows = executor_for(fresh, cfg, tmp_path).status(plan)

    by_key = {(r.stackset, r.account): r for r in rows}
    assert by_key[("rstudio-central", "222222222222")].detailed_status == "SUCCEEDED"
    assert by_key[("rstudio-central", "")].status == "ACTIVE"
    assert by_key[("rstudio-prod", "")].status == "NOT DEPLOYED"


def test_drift_reports_drifted_instances(after_deploy: AwsModel, cfg: Config, plan: Plan, tmp_path: Path) -> None:
    after_deploy.drift("rstudio-central", "222222222222", REGION, "ImageBuildBucket", "AWS::S3::Bucket")
    report = executor_for(after_deploy, cfg, tmp_path).drift(plan.only(["rstudio-central"]))

    assert report.drifted
    (instance,) = report.results["rstudio-central"].drifted
    assert (instance.account, instance.region) == ("222222222222", REGION)
    assert report.results["rstudio-bootstrap"].drifted == []
    assert report.results["rstudio-bootstrap"].message == "in sync"


def test_drift_names_the_drifted_resources(after_deploy: AwsModel, cfg: Config, plan: Plan, tmp_path: Path) -> None:
    after_deploy.drift("rstudio-central", "222222222222", REGION, "ImageBuildBucket", "AWS::S3::Bucket")
    report = executor_for(after_deploy, cfg, tmp_path).drift(plan.only(["rstudio-central"]))

    (instance,) = report.results["rstudio-central"].drifted
    assert instance.resources == ("ImageBuildBucket (AWS::S3::Bucket): MODIFIED",)


def test_drift_detection_outage_fails_that_stackset(after_deploy: AwsModel, cfg: Config, plan: Plan,
                                                    tmp_path: Path) -> None:  # fmt: skip
    after_deploy.fail_next("detect_stack_set_drift", "InternalFailure", times=10**6)
    report = executor_for(after_deploy, cfg, tmp_path).drift(plan.only(["rstudio-bootstrap"]))

    bootstrap = report.results["rstudio-bootstrap"]
    assert bootstrap.state is State.FAILED
    assert "InternalFailure" in bootstrap.message and "unavailable" not in bootstrap.message


def test_expired_credentials_stop_the_run_with_a_clear_error(fresh: AwsModel, cfg: Config, plan: Plan,
                                                             tmp_path: Path) -> None:  # fmt: skip
    fresh.fail_next("describe_stack_set", "ExpiredToken", times=10**6)
    with pytest.raises(AwsError, match="expired or invalid"):
        executor_for(fresh, cfg, tmp_path).deploy(plan)
    assert fresh.calls["create_stack_set"] == 0
    assert fresh.calls["describe_stack_set"] == 1  # not retried: every further call would fail the same way


def test_retained_resources_reads_short_form_tags() -> None:
    body = "Resources:\n  Zone:\n    DeletionPolicy: Retain\n    Type: AWS::Route53::HostedZone\n" \
           "  Rec:\n    Type: AWS::Route53::RecordSet\n    Properties:\n      Name: !Ref Zone\n"  # fmt: skip
    assert retained_resources(body) == [("AWS::Route53::HostedZone", "Zone")]
