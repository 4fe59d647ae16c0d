"""Waiting on AWS holds no worker, each operation has its own time limit, and polling backs off per operation.

Time is a FakeClock that only the walk's (and the retry loop's) sleep advances, so `report.elapsed` is the
simulated makespan: what a real run would take if every call answered instantly.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from stacksets.config import Config
from stacksets.plan import Plan, build_plan
from stacksets.results import State
from tests.conftest import TEMPLATES
from tests.fake_aws import FakeAws, FakeClock
from tests.test_executor import ORGANIZATION, executor


@pytest.fixture
def central_like(cfg: Config) -> Plan:
    return build_plan(cfg, TEMPLATES)


def stacksets(plan: Plan, count: int, chained: bool) -> Plan:
    """`count` StackSets shaped like rstudio-central (one instance, no parameters), independent or in a chain."""
    central = plan.nodes["rstudio-central"]
    names = [f"rstudio-set{i:02d}" for i in range(count)]
    return Plan({name: replace(central, name=name, depends_on=(names[i - 1],) if chained and i else ())
                 for i, name in enumerate(names)})  # fmt: skip


def fake_taking(seconds: float) -> FakeAws:
    fake = FakeAws(FakeClock(), organization=ORGANIZATION)
    fake.duration = lambda stackset, action, pairs: seconds
    return fake


def test_twenty_operations_wait_side_by_side_on_two_workers(central_like: Plan, tmp_path: Path) -> None:
    fake = fake_taking(600)
    report = executor(fake, tmp_path, max_workers=2).deploy(stacksets(central_like, 20, chained=False))

    assert report.ok, {n: r.message for n, r in report.results.items()}
    starts = [at for at, api, _ in fake.log if api == "create_stack_instances"]
    assert len(starts) == 20 and max(starts) == 0  # all in flight at once, not two at a time
    # noticed at the first poll after 600 s (0, 15, 45, ... 615), instead of 10 rounds of it
    assert report.elapsed == pytest.approx(615)


def test_the_time_limit_applies_per_operation_not_per_run(central_like: Plan, tmp_path: Path) -> None:
    fake = fake_taking(1200)
    report = executor(fake, tmp_path, timeout_s=3600).deploy(stacksets(central_like, 6, chained=True))

    assert report.ok, {n: r.message for n, r in report.results.items()}
    assert report.elapsed > 6 * 1200  # far beyond one time limit: the chain as a whole may take that long
    assert [entry.stackset for entry in report.timeline if entry.operation == "create_stack_instances"] == [
        f"rstudio-set{i:02d}" for i in range(6)]  # fmt: skip


def test_one_operation_over_the_limit_fails_alone(central_like: Plan, tmp_path: Path) -> None:
    fake = fake_taking(600)
    fake.never_end.add("rstudio-set01")
    report = executor(fake, tmp_path, timeout_s=900, max_workers=1).deploy(stacksets(central_like, 3, chained=False))

    assert report.results["rstudio-set01"].state is State.FAILED
    assert "900 s time limit" in report.results["rstudio-set01"].message
    assert {report.results[n].state for n in ("rstudio-set00", "rstudio-set02")} == {State.SUCCEEDED}
    assert report.elapsed == pytest.approx(900)  # the others finished while it was still running


def test_each_operation_polls_on_its_own_backoff(central_like: Plan, tmp_path: Path) -> None:
    fake = fake_taking(200)
    fake.in_progress[("rstudio-set01", "create_stack_instances")] = 1  # starts 15 s after the other one
    executor(fake, tmp_path).deploy(stacksets(central_like, 2, chained=False))

    def polls(stackset: str) -> list[float]:
        return [at for at, api, kw in fake.log
                if api == "describe_stack_set_operation" and kw["StackSetName"] == stackset]  # fmt: skip

    assert polls("rstudio-set00") == [0, 15, 45, 75, 105, 135, 165, 195, 225]  # 15 s doubling, capped at 30
    assert polls("rstudio-set01") == [15 + at for at in polls("rstudio-set00")]
