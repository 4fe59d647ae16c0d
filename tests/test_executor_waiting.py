"""Waiting on AWS holds no worker, each operation has its own time limit, and polling backs off per operation.

Time is the AWS model's ManualClock, which only the walk's (and the retry loop's) sleep advances, so
`report.elapsed` is the simulated makespan: what a real run would take if every call answered instantly.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import pytest

from stacksets.awsmodel.model import AwsModel
from stacksets.config import Config
from stacksets.plan import Plan, build_plan
from stacksets.results import Event, InstanceCounts, State
from tests.awsmodel_helpers import executor_for, live_stackset, model_for, scenario
from tests.conftest import TEMPLATES

# rstudio-central itself names its bucket and repositories, so twenty copies of it would collide in one account
TOPIC = "Resources:\n  Topic:\n    Type: AWS::SNS::Topic\n"


@pytest.fixture(scope="module")
def central(cfg: Config) -> Plan:
    return build_plan(cfg, TEMPLATES)


def stacksets(plan: Plan, count: int, chained: bool) -> Plan:
    """`count` StackSets shaped like rstudio-central (one instance, no parameters), independent or in a chain."""
    node = replace(plan.nodes["rstudio-central"], template_body=TOPIC,
                   template_sha256=hashlib.sha256(TOPIC.encode()).hexdigest())  # fmt: skip
    names = [f"rstudio-set{i:02d}" for i in range(count)]
    return Plan({name: replace(node, name=name, depends_on=(names[i - 1],) if chained and i else ())
                 for i, name in enumerate(names)})  # fmt: skip


def model_taking(cfg: Config, seconds: float) -> AwsModel:
    # request rates high enough that throttling does not move the polls this file times
    return model_for(cfg, scenario(durations={"default": seconds}, limits={"api_burst": 10_000}))


def test_twenty_operations_wait_side_by_side_on_two_workers(cfg: Config, central: Plan, tmp_path: Path) -> None:
    model = model_taking(cfg, 600)
    report = executor_for(model, cfg, tmp_path, max_workers=2).deploy(stacksets(central, 20, chained=False))

    assert report.ok, {n: r.message for n, r in report.results.items()}
    starts = [call.at for call in model.log if call.api == "create_stack_instances"]
    # all in flight at once (within the seconds the client-side pacing spreads 80 first calls over), not two at a time
    assert len(starts) == 20 and max(starts) < 15
    # each noticed at its first poll after 600 s, instead of 10 rounds of 600 s
    assert report.elapsed < 660


def test_the_time_limit_applies_per_operation_not_per_run(cfg: Config, central: Plan, tmp_path: Path) -> None:
    model = model_taking(cfg, 1200)
    report = executor_for(model, cfg, tmp_path, timeout_s=3600).deploy(stacksets(central, 6, chained=True))

    assert report.ok, {n: r.message for n, r in report.results.items()}
    assert report.elapsed >= 6 * 1200  # far beyond one time limit: the chain as a whole may take that long
    assert [entry.stackset for entry in report.timeline if entry.operation == "create_stack_instances"] == [
        f"rstudio-set{i:02d}" for i in range(6)]  # fmt: skip


def test_one_operation_over_the_limit_fails_alone(cfg: Config, central: Plan, tmp_path: Path) -> None:
    model = model_taking(cfg, 600)
    model.never_end("rstudio-set01")
    report = executor_for(model, cfg, tmp_path, timeout_s=900, max_workers=1).deploy(
        stacksets(central, 3, chained=False))

    assert report.results["rstudio-set01"].state is State.FAILED
    assert "900 s time limit" in report.results["rstudio-set01"].message
    assert {report.results[n].state for n in ("rstudio-set00", "rstudio-set02")} == {State.SUCCEEDED}
    assert report.elapsed == pytest.approx(900)  # the others finished while it was still running


def test_each_operation_polls_on_its_own_backoff(cfg: Config, central: Plan, tmp_path: Path) -> None:
    model = model_taking(cfg, 200)
    # someone else's operation on rstudio-set01 at first: its own starts one backoff step (15 s) later
    # someone else's operation on whichever StackSet calls first: its own operation starts one backoff step later
    model.fail_next("create_stack_instances", "OperationInProgressException")
    executor_for(model, cfg, tmp_path).deploy(stacksets(central, 2, chained=False))

    def polls(stackset: str) -> list[float]:
        return [call.at for call in model.log
                if call.api == "describe_stack_set_operation" and call.params["StackSetName"] == stackset]

    creates = [(call.at, call.params["StackSetName"]) for call in model.log if call.api == "create_stack_instances"]
    (_, late), (_, early) = creates[0], creates[1]
    assert creates[1:] == [(0, early), (15, late)]  # refused at 0, started after 15 s
    assert polls(early) == [15 * i for i in range(15)]  # every 15 s: few operations are in flight
    assert polls(late) == [15 + at for at in polls(early)]


def test_each_poll_reports_the_stacksets_instance_counts(cfg: Config, central: Plan, tmp_path: Path) -> None:
    """A rollout to fifty accounts, one of whose stacks fails: each poll says how many instances are done, failed
    and still running, out of all of them (the live progress shows them), and the last one what the rollout left."""
    ou = cfg.stacksets.bootstrap.organizational_units[0]
    accounts = {f"7000000000{i:02d}": {"ou": ou} for i in range(49)}
    fault = {"stackset": "rstudio-bootstrap", "account": "700000000013", "resource": "DeployReaderRole"}
    model = model_for(cfg, scenario(accounts=accounts, faults=[fault], durations={"default": 600},
                                    limits={"api_burst": 10_000}))  # fmt: skip
    events: list[Event] = []
    report = executor_for(model, cfg, tmp_path, events).deploy(central.only(["rstudio-bootstrap"]))

    instances = live_stackset(model, "rstudio-bootstrap").instances.values()
    total, ok = len(instances), sum(1 for instance in instances if instance.detailed == "SUCCEEDED")
    counted = [e for e in events if e.instances is not None and e.operation == "create_stack_instances"]
    assert total >= 50 and len(counted) >= 3  # polls while it ran, and one at its end
    assert {e.instances.total for e in counted} == {total}
    assert counted[0].instances == InstanceCounts(0, 0, total, total)
    assert counted[-1].instances == InstanceCounts(ok, total - ok, 0, total)  # read once the operation had ended
    assert 0 < ok < total and report.results["rstudio-bootstrap"].state is State.FAILED
    assert all(e.done == 0 and e.total == 1 for e in counted)  # the run's StackSet count is a separate field


def test_an_operation_on_one_instance_polls_without_counting(cfg: Config, central: Plan, tmp_path: Path) -> None:
    """Most operations of a large plan target one instance: their polls stay one request each, and the deploy's
    own read of the instances afterwards gives the row its counts."""
    model = model_taking(cfg, 600)
    events: list[Event] = []
    report = executor_for(model, cfg, tmp_path, events).deploy(stacksets(central, 1, chained=False))

    assert report.ok
    calls = [call.api for call in model.log if call.params.get("StackSetName") == "rstudio-set00"]
    assert calls.count("describe_stack_set_operation") >= 10 and calls.count("list_stack_instances") == 1
    assert [e.instances for e in events if e.instances is not None] == [InstanceCounts(1, 0, 0, 1)]
