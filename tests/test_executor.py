"""The executor against the in-memory StackSets fake: ordering, idempotence, faults, resume, destroy, CallAs.

Time is a FakeClock shared by the fake and the executor's sleep: nothing here really sleeps.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from stacksets.aws import AwsError
from stacksets.config import CallAs, Config, PermissionModel
from stacksets.executor import Event, Executor, Options, State, retained_resources
from stacksets.plan import Plan, build_plan
from tests.conftest import TEMPLATES
from tests.fake_aws import FakeAws, FakeClock, SimClock

WORKLOADS, SHARED, TEAMS = "ou-ab12-11111111", "ou-ab12-22222222", "ou-ab12-33333333"
ORGANIZATION = {
    WORKLOADS: (["222222222222", "333333333333", "444444444444"], []),
    SHARED: ([], [TEAMS]),  # instance accounts sit one OU further down: expansion must recurse
    TEAMS: (["555555555555", "666666666666"], []),
}
ALL_ACCOUNTS = ["222222222222", "333333333333", "444444444444", "555555555555", "666666666666"]


@pytest.fixture
def plan(cfg: Config) -> Plan:
    return build_plan(cfg, TEMPLATES)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def fake(clock: FakeClock) -> FakeAws:
    fake = FakeAws(clock, organization=ORGANIZATION)
    fake.polls = 2
    return fake


def executor(fake: FakeAws, tmp_path: Path, events: list[Event] | None = None, **options: object) -> Executor:
    return Executor(fake, options=Options(state_path=tmp_path / "state.json", **options),  # type: ignore[arg-type]
                    clock=fake.clock, sleep=fake.clock.sleep,
                    on_event=events.append if events is not None else lambda event: None,
                    random=lambda: 0.5)  # fmt: skip


def first(events: list[Event], stackset: str, state: State) -> int:
    return next(i for i, e in enumerate(events) if e.stackset == stackset and e.state is state)


def test_first_deploy_creates_everything_in_dependency_order(fake: FakeAws, plan: Plan, tmp_path: Path) -> None:
    report = executor(fake, tmp_path).deploy(plan)

    assert report.ok, {n: r.message for n, r in report.results.items()}
    assert set(fake.stacksets) == set(plan.nodes)
    created = [kw["StackSetName"] for kw in fake.calls_for("create_stack_set")]
    for name, node in plan.without_images().nodes.items():
        for dep in node.depends_on:
            assert created.index(dep) < created.index(name), f"{name} created before its dependency {dep}"
    # the bootstrap went to every account of both OUs, the nested OU included
    bootstrap = fake.stacksets["rstudio-bootstrap"]
    assert sorted(bootstrap.instances) == [(a, "eu-west-1") for a in ALL_ACCOUNTS]
    assert report.calls["create_stack_set"] == 10 and report.calls["create_stack_instances"] == 10


def test_zone_name_servers_flow_into_the_network_override(fake: FakeAws, plan: Plan, tmp_path: Path) -> None:
    executor(fake, tmp_path).deploy(plan)

    (call,) = [kw for kw in fake.calls_for("create_stack_instances") if kw["StackSetName"] == "rstudio-network"]
    overrides = {p["ParameterKey"]: p["ParameterValue"] for p in call["ParameterOverrides"]}
    zone_stacks = fake.stacks[("555555555555", "eu-west-1")]
    dev_zone = next(s for name, s in zone_stacks.items() if name.startswith("StackSet-rstudio-dev-zone-"))
    assert overrides == {
        "DevNameServers": dev_zone["Outputs"]["NameServers"],
        "ProdNameServers": "ns-1.666666666666.example.net,ns-2.666666666666.example.org",
    }
    assert call["DeploymentTargets"] == {"OrganizationalUnitIds": [WORKLOADS, SHARED], "Accounts": ["333333333333"],
                                         "AccountFilterType": "INTERSECTION"}  # fmt: skip
    network = fake.stacksets["rstudio-network"]
    assert network.instances[("333333333333", "eu-west-1")].overrides == overrides


def test_second_deploy_makes_no_mutating_call(fake: FakeAws, plan: Plan, tmp_path: Path) -> None:
    executor(fake, tmp_path).deploy(plan)
    before = fake.mutating_calls()

    again = executor(fake, tmp_path)
    assert not any(d.changed for d in again.diff(plan))
    report = again.deploy(plan)

    assert report.ok
    assert fake.mutating_calls() == before
    assert sum(report.calls.values()) == 0
    assert {r.state for r in report.results.values()} == {State.UNCHANGED}


def test_template_change_updates_only_that_stackset(fake: FakeAws, plan: Plan, tmp_path: Path) -> None:
    executor(fake, tmp_path).deploy(plan)
    central = plan.nodes["rstudio-central"]
    changed = Plan({**plan.nodes, central.name: replace(central, template_body=central.template_body + "# v2\n")})

    diffs = {d.name: d for d in executor(fake, tmp_path).diff(changed)}
    assert diffs["rstudio-central"].template_changed and not diffs["rstudio-central"].create
    assert [n for n, d in diffs.items() if d.changed] == ["rstudio-central"]

    report = executor(fake, tmp_path).deploy(changed)
    assert report.ok
    assert dict(report.calls) == {"update_stack_set": 1}
    assert fake.calls_for("update_stack_set")[0]["StackSetName"] == "rstudio-central"
    assert fake.stacksets["rstudio-central"].body.endswith("# v2\n")
    assert report.results["rstudio-central"].state is State.SUCCEEDED
    assert report.results["rstudio-data"].state is State.UNCHANGED


def test_failed_operation_skips_dependents_with_the_reason(fake: FakeAws, plan: Plan, tmp_path: Path) -> None:
    fake.fail_operations.add(("rstudio-dev-zone", "create_stack_instances"))
    report = executor(fake, tmp_path).deploy(plan)

    assert not report.ok
    zone = report.results["rstudio-dev-zone"]
    assert zone.state is State.FAILED and "FAILED" in zone.message
    assert [(f.account, f.region) for f in zone.failures] == [("555555555555", "eu-west-1")]
    assert report.results["rstudio-network"].state is State.SKIPPED
    assert report.results["rstudio-network"].message == "dependency rstudio-dev-zone failed"
    assert report.results["rstudio-dev"].message == "dependency rstudio-dev-zone failed"
    assert report.results["rstudio-prod"].message == "dependency rstudio-network was skipped"
    assert report.results["rstudio-prod-zone"].state is State.SUCCEEDED  # independent work still ran
    assert "rstudio-network" not in fake.stacksets and "rstudio-dev" not in fake.stacksets


def test_failed_instance_inside_tolerance_is_reported(fake: FakeAws, plan: Plan, tmp_path: Path) -> None:
    fake.fail_instances[("rstudio-bootstrap", "444444444444", "eu-west-1")] = "Role rstudio-deploy-reader exists"
    report = executor(fake, tmp_path).deploy(plan)

    bootstrap = report.results["rstudio-bootstrap"]
    assert bootstrap.state is State.FAILED  # although the operation itself SUCCEEDED
    (failure,) = bootstrap.failures
    assert (failure.account, failure.reason) == ("444444444444", "Role rstudio-deploy-reader exists")
    # the first failing events, oldest first, through the reader role
    assert failure.events[0].startswith("First (AWS::S3::Bucket) CREATE_FAILED: Role rstudio-deploy-reader exists")
    assert len(failure.events) == 2
    assert {r.state for n, r in report.results.items() if n != "rstudio-bootstrap"} == {State.SKIPPED}


def test_operation_in_progress_is_waited_for_and_retried(fake: FakeAws, plan: Plan, tmp_path: Path) -> None:
    fake.in_progress[("rstudio-central", "create_stack_instances")] = 2
    report = executor(fake, tmp_path, poll_s=10).deploy(plan)

    assert report.ok
    calls = [(at, kw) for at, api, kw in fake.log
             if api == "create_stack_instances" and kw["StackSetName"] == "rstudio-central"]  # fmt: skip
    assert len(calls) == 3
    assert calls[0][1]["OperationId"] == calls[2][1]["OperationId"]  # the same client id: idempotent retry
    # exponential backoff of this StackSet's own (other StackSets' polls interleave in the walk's sleeps)
    assert [later[0] - earlier[0] for earlier, later in zip(calls, calls[1:])] == [10, 20]


def test_queued_operations_are_waited_for(fake: FakeAws, plan: Plan, tmp_path: Path) -> None:
    fake.queued_polls = 3
    events: list[Event] = []
    report = executor(fake, tmp_path, events).deploy(plan)

    assert report.ok
    assert any(e.message == "queued" for e in events)


def test_throttling_burst_is_survived_with_bounded_backoff(fake: FakeAws, plan: Plan, tmp_path: Path) -> None:
    fake.throttle["describe_stack_set"] = 4
    fake.throttle["create_stack_instances"] = 3
    report = executor(fake, tmp_path, max_workers=1).deploy(plan)

    assert report.ok
    backoffs = fake.clock.sleeps[:4]
    assert backoffs == [0.5, 1.0, 2.0, 4.0]  # base 1 s doubling, full jitter (random fixed at 0.5)


def test_endless_throttling_gives_up_after_the_retry_budget(fake: FakeAws, plan: Plan, tmp_path: Path) -> None:
    fake.throttle["create_stack_set"] = 10**6
    report = executor(fake, tmp_path).deploy(plan.only(["rstudio-bootstrap"]))

    bootstrap = report.results["rstudio-bootstrap"]
    assert bootstrap.state is State.FAILED
    assert "create_stack_set was throttled" in bootstrap.message
    assert fake.clock.now == pytest.approx(600)  # 600 s of backoff on this one call, then no more
    attempts = report.calls_by_stackset["rstudio-bootstrap"]["create_stack_set"]
    assert attempts == fake.calls["create_stack_set"] > 8  # every attempt counted, far beyond a fixed count


def test_never_ending_operation_hits_the_time_limit(fake: FakeAws, plan: Plan, tmp_path: Path) -> None:
    fake.never_end.add("rstudio-bootstrap")
    report = executor(fake, tmp_path, timeout_s=900).deploy(plan)

    bootstrap = report.results["rstudio-bootstrap"]
    assert bootstrap.state is State.FAILED and "900 s time limit" in bootstrap.message
    assert fake.clock.now == pytest.approx(900)
    assert max(fake.clock.sleeps) == 30  # polling backs off to at most half a minute
    # the operation id stays in the state file for the next run to reattach
    state = json.loads((tmp_path / "state.json").read_text())
    assert state["operations"]["rstudio-bootstrap"]["action"] == "create_stack_instances"


def test_interrupted_run_reattaches_instead_of_starting_again(fake: FakeAws, plan: Plan, tmp_path: Path) -> None:
    fake.never_end.add("rstudio-bootstrap")
    bootstrap_only = plan.only(["rstudio-bootstrap"])
    executor(fake, tmp_path, timeout_s=120).deploy(bootstrap_only)  # "interrupted": gave up, op still RUNNING
    recorded = json.loads((tmp_path / "state.json").read_text())["operations"]["rstudio-bootstrap"]["operation_id"]
    assert fake.stacksets["rstudio-bootstrap"].operations[recorded].status == "RUNNING"

    fake.never_end.clear()  # the operation finishes in AWS after a few more polls
    operation = fake.stacksets["rstudio-bootstrap"].operations[recorded]
    operation.never_ends, operation.polls_left = False, 3
    events: list[Event] = []
    report = executor(fake, tmp_path, events).deploy(bootstrap_only)

    assert report.ok and report.results["rstudio-bootstrap"].state is State.SUCCEEDED
    assert fake.calls["create_stack_instances"] == 1 and fake.calls["create_stack_set"] == 1
    assert report.results["rstudio-bootstrap"].operations == [recorded]
    assert any(e.message == f"reattached to {recorded}" for e in events)
    assert operation.status == "SUCCEEDED"
    assert json.loads((tmp_path / "state.json").read_text())["operations"] == {}


def test_operation_id_already_taken_means_reattach(fake: FakeAws, plan: Plan, tmp_path: Path) -> None:
    """A call whose answer was lost and that is retried with the same id waits for the first one."""
    original = fake.create_stack_instances
    attempts = []

    def lost_answer(**kw: object) -> object:
        answer = original(**kw)
        attempts.append(kw["OperationId"])
        if len(attempts) == 1:
            from tests.fake_aws import client_error

            raise client_error("Throttling")  # accepted, but the client saw an error
        return answer

    fake.create_stack_instances = lost_answer  # type: ignore[method-assign]
    report = executor(fake, tmp_path).deploy(plan.only(["rstudio-bootstrap"]))

    assert report.ok
    assert len(fake.stacksets["rstudio-bootstrap"].operations) == 1  # no second operation


def test_destroy_goes_in_reverse_order_instances_before_sets(fake: FakeAws, plan: Plan, tmp_path: Path) -> None:
    executor(fake, tmp_path).deploy(plan)
    calls_before = len(fake.log)
    report = executor(fake, tmp_path).destroy(plan)

    assert report.ok and fake.stacksets == {}
    deletes = [(api, kw["StackSetName"]) for _, api, kw in fake.log[calls_before:]
               if api in ("delete_stack_instances", "delete_stack_set")]  # fmt: skip
    set_order = [name for api, name in deletes if api == "delete_stack_set"]
    for name, node in plan.without_images().nodes.items():
        assert deletes.index(("delete_stack_instances", name)) < deletes.index(("delete_stack_set", name))
        for dep in node.depends_on:
            assert set_order.index(name) < set_order.index(dep), f"{dep} deleted before its dependent {name}"
    bootstrap_delete = next(kw for kw in fake.calls_for("delete_stack_instances")
                            if kw["StackSetName"] == "rstudio-bootstrap")  # fmt: skip
    assert bootstrap_delete["RetainStacks"] is False
    assert bootstrap_delete["DeploymentTargets"]["Accounts"] == ALL_ACCOUNTS
    assert ("AWS::Route53::HostedZone", "HostedZone") in report.results["rstudio-dev-zone"].retained


def test_call_as_on_every_stacksets_call(fake: FakeAws, plan: Plan, tmp_path: Path) -> None:
    executor(fake, tmp_path).deploy(plan)
    executor(fake, tmp_path).status(plan)

    stackset_calls = [(api, kw) for _, api, kw in fake.log if "StackSetName" in kw]
    assert stackset_calls
    assert all(kw.get("CallAs") == "DELEGATED_ADMIN" for _, kw in stackset_calls)


def test_self_managed_passes_accounts_and_no_call_as(example_data: dict, tmp_path: Path) -> None:
    from stacksets.config import parse_config

    example_data["stacksets"] = {"permission_model": "self_managed", "call_as": "self"}
    plan = build_plan(parse_config(example_data), TEMPLATES)
    fake = FakeAws(FakeClock())
    assert plan.nodes["rstudio-central"].permission_model is PermissionModel.self_managed
    report = executor(fake, tmp_path).deploy(plan)

    assert report.ok
    assert all("CallAs" not in kw for _, _, kw in fake.log)
    central = next(kw for kw in fake.calls_for("create_stack_instances") if kw["StackSetName"] == "rstudio-central")
    assert central["Accounts"] == ["222222222222"] and "DeploymentTargets" not in central
    assert fake.calls_for("create_stack_set")[0]["PermissionModel"] == "SELF_MANAGED"
    assert "AutoDeployment" not in fake.calls_for("create_stack_set")[0]


def test_service_managed_bootstrap_auto_deploys(fake: FakeAws, plan: Plan, tmp_path: Path) -> None:
    assert plan.nodes["rstudio-bootstrap"].call_as is CallAs.delegated_admin
    executor(fake, tmp_path).deploy(plan.only(["rstudio-bootstrap"]))

    create = fake.calls_for("create_stack_set")[0]
    assert create["AutoDeployment"] == {"Enabled": True, "RetainStacksOnAccountRemoval": False}
    assert create["ManagedExecution"] == {"Active": True}
    assert create["PermissionModel"] == "SERVICE_MANAGED"


def test_independent_stacksets_overlap(plan: Plan, tmp_path: Path) -> None:
    fake = FakeAws(SimClock(), organization=ORGANIZATION)
    fake.polls = 2
    both = lambda f: f.started("rstudio-central", "rstudio-data")  # noqa: E731
    fake.gates = {"rstudio-central": both, "rstudio-data": both}  # a one-at-a-time run would time out here
    events: list[Event] = []
    report = executor(fake, tmp_path, events).deploy(plan)

    assert report.ok
    started = max(first(events, "rstudio-central", State.RUNNING), first(events, "rstudio-data", State.RUNNING))
    ended = min(first(events, "rstudio-central", State.SUCCEEDED), first(events, "rstudio-data", State.SUCCEEDED))
    assert started < ended


def test_readiness_not_waves(plan: Plan, tmp_path: Path) -> None:
    """rstudio-dev-data needs only rstudio-data: it starts while the dev zone (same wave as data) still runs."""
    fake = FakeAws(SimClock(), organization=ORGANIZATION)
    fake.gates = {"rstudio-dev-zone": lambda f: f.started("rstudio-dev-data")}  # waves would time out here
    events: list[Event] = []
    report = executor(fake, tmp_path, events).deploy(plan)

    assert report.ok
    assert first(events, "rstudio-dev-data", State.RUNNING) < first(events, "rstudio-dev-zone", State.SUCCEEDED)


def test_large_template_goes_through_the_staging_bucket(fake: FakeAws, plan: Plan, tmp_path: Path) -> None:
    prod = plan.nodes["rstudio-prod"]
    assert prod.needs_s3
    executor(fake, tmp_path).deploy(plan)

    create = next(kw for kw in fake.calls_for("create_stack_set") if kw["StackSetName"] == "rstudio-prod")
    bucket = "rstudio-fargate-templates-111111111111-eu-west-1"
    assert create["TemplateURL"] == f"https://{bucket}.s3.eu-west-1.amazonaws.com/templates/{prod.template_sha256}.yaml"
    assert "TemplateBody" not in create
    assert fake.buckets[bucket][f"templates/{prod.template_sha256}.yaml"] == prod.template_body.encode()


def test_diff_shows_unresolved_outputs_and_prune(fake: FakeAws, plan: Plan, tmp_path: Path) -> None:
    diffs = {d.name: d for d in executor(fake, tmp_path).diff(plan)}
    assert diffs["rstudio-network"].parameters["DevNameServers"].startswith("(from <rstudio-dev-zone ")
    assert not diffs["rstudio-network"].exists

    executor(fake, tmp_path).deploy(plan)
    central = plan.nodes["rstudio-central"]
    moved = replace(central, targets=replace(central.targets, accounts=("444444444444",)))
    diffs = {d.name: d for d in executor(fake, tmp_path).diff(Plan({**plan.nodes, central.name: moved}))}
    assert diffs["rstudio-central"].create == (("444444444444", "eu-west-1"),)
    assert diffs["rstudio-central"].orphaned == (("222222222222", "eu-west-1"),) and not diffs["rstudio-central"].delete

    report = executor(fake, tmp_path, prune=True).deploy(Plan({**plan.nodes, central.name: moved}))
    assert report.ok and report.calls["delete_stack_instances"] == 1
    assert sorted(fake.stacksets["rstudio-central"].instances) == [("444444444444", "eu-west-1")]


def test_status_rows(fake: FakeAws, plan: Plan, tmp_path: Path) -> None:
    executor(fake, tmp_path).deploy(plan.only(["rstudio-central"]))
    rows = executor(fake, tmp_path).status(plan)

    by_key = {(r.stackset, r.account): r for r in rows}
    assert by_key[("rstudio-central", "222222222222")].detailed_status == "SUCCEEDED"
    assert by_key[("rstudio-central", "")].status == "ACTIVE"
    assert by_key[("rstudio-prod", "")].status == "NOT DEPLOYED"


def test_drift_reports_drifted_instances_and_resources(fake: FakeAws, plan: Plan, tmp_path: Path) -> None:
    executor(fake, tmp_path).deploy(plan.only(["rstudio-central"]))
    fake.stacksets["rstudio-central"].instances[("222222222222", "eu-west-1")].drift = "DRIFTED"
    report = executor(fake, tmp_path).drift(plan.only(["rstudio-central"]))

    assert report.drifted
    (instance,) = report.results["rstudio-central"].drifted
    assert instance.account == "222222222222"
    assert instance.resources == ("Bucket (AWS::S3::Bucket): MODIFIED",)
    assert report.results["rstudio-bootstrap"].drifted == []


def test_drift_unavailable_does_not_crash(fake: FakeAws, plan: Plan, tmp_path: Path) -> None:
    executor(fake, tmp_path).deploy(plan.only(["rstudio-bootstrap"]))
    fake.not_implemented.add("detect_stack_set_drift")
    report = executor(fake, tmp_path).drift(plan.only(["rstudio-bootstrap"]))

    assert report.ok
    assert "unavailable" in report.results["rstudio-bootstrap"].message


def test_expired_credentials_stop_the_run_with_a_clear_error(fake: FakeAws, plan: Plan, tmp_path: Path) -> None:
    from tests.fake_aws import client_error

    def expired(**_: object) -> object:
        raise client_error("ExpiredToken", "The security token included in the request is expired")

    fake.describe_stack_set = expired  # type: ignore[method-assign]
    with pytest.raises(AwsError, match="expired or invalid"):
        executor(fake, tmp_path).deploy(plan)
    assert fake.calls["create_stack_set"] == 0


def test_retained_resources_reads_short_form_tags() -> None:
    body = "Resources:\n  Zone:\n    DeletionPolicy: Retain\n    Type: AWS::Route53::HostedZone\n" \
           "  Rec:\n    Type: AWS::Route53::RecordSet\n    Properties:\n      Name: !Ref Zone\n"  # fmt: skip
    assert retained_resources(body) == [("AWS::Route53::HostedZone", "Zone")]
