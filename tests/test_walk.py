"""The walk on its own, with steps that only park: readiness order, parking without a worker, failure propagation,
and a stop that skips what has not started. No AWS, and time is a ManualClock that only the walk's sleep moves."""

from __future__ import annotations

from pathlib import Path
from typing import Generator

import pytest

from stacksets.awsmodel.clock import ManualClock
from stacksets.config import CallAs, PermissionModel
from stacksets.plan import Node, Plan, Targets
from stacksets.results import Event, State
from stacksets.run import Options, Run
from stacksets.walk import Park, Verdict, walk


class Stop(Exception):
    pass


def plan(**depends_on: tuple[str, ...]) -> Plan:
    targets = Targets(regions=("eu-west-1",), accounts=("111111111111",))
    return Plan({name: Node(name, f"{name}.yaml", "", "0" * 64, targets, PermissionModel.self_managed, CallAs.self, {},
                            depends_on=deps) for name, deps in depends_on.items()})  # fmt: skip


def judge(error: Exception) -> Verdict:
    return Verdict(f"{type(error).__name__}: {error}", stop="told to stop" if isinstance(error, Stop) else "")


def run_walk(the_plan: Plan, behaviour: dict[str, tuple[float, Exception | None]], workers: int = 1,
             events: list[Event] | None = None) -> tuple[Run, ManualClock]:  # fmt: skip
    """Each step parks for its seconds, then raises its error or succeeds."""
    clock = ManualClock()
    run = Run(None, Options(max_workers=workers, state_path=Path("unused")), clock=clock, sleep=clock.sleep,
              random=lambda: 0.5, on_event=(events if events is not None else []).append,
              total=len(the_plan.nodes))  # fmt: skip

    def work(step: Node) -> Generator[Park, None, State]:
        seconds, error = behaviour.get(step.name, (0.0, None))
        if seconds:
            yield Park(seconds)
        if error is not None:
            raise error
        return State.SUCCEEDED

    walk(run, the_plan, work, "deploy", judge)
    return run, clock


def test_parked_steps_hold_no_worker() -> None:
    run, _ = run_walk(plan(a=(), b=(), c=()), {name: (100.0, None) for name in "abc"}, workers=1)
    assert run.report.ok
    assert run.report.elapsed == 100  # three waits side by side on one worker, not one after the other


def test_a_step_starts_as_soon_as_its_own_dependencies_are_done() -> None:
    events: list[Event] = []
    run_walk(plan(a=(), slow=(), after_a=("a",)), {"a": (10.0, None), "slow": (100.0, None)}, events=events)
    started = next(e.at for e in events if e.stackset == "after_a" and e.state is State.RUNNING)
    assert started == 10  # not after "slow", which is in the same wave as "a"


def test_a_failure_skips_its_dependents_with_the_reason_and_nothing_else() -> None:
    run, _ = run_walk(plan(a=(), b=("a",), c=("b",), other=()), {"a": (5.0, RuntimeError("boom"))})
    results = run.report.results
    assert (results["a"].state, results["a"].message) == (State.FAILED, "RuntimeError: boom")
    assert results["b"].message == "dependency a failed"
    assert results["c"].message == "dependency b was skipped"
    assert results["other"].state is State.SUCCEEDED


def test_a_stop_skips_what_has_not_started_lets_waiting_steps_finish_and_is_raised() -> None:
    seen: list[Event] = []
    with pytest.raises(Stop):
        run_walk(plan(a=(), b=("a",), parked=()), {"a": (10.0, Stop("x")), "parked": (50.0, None)}, events=seen)
    final = {e.stackset: (e.state, e.message) for e in seen if e.state not in (State.PENDING, State.RUNNING)}
    assert final == {"a": (State.FAILED, "Stop: x"), "b": (State.SKIPPED, "stopped: told to stop"),
                     "parked": (State.SUCCEEDED, "")}  # fmt: skip
