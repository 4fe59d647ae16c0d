"""The readiness-driven walk over a plan: every step starts as soon as its dependencies are done, a step whose
dependency failed or was skipped is skipped with that reason, and one step's exception never hides the others'.

The walk knows nothing about AWS. A step's work is a generator that yields `Park(seconds)` whenever it has nothing
to do but wait, and returns the step's final State; `judge` turns an exception into what the report says.
"""

from __future__ import annotations

from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Callable, Generator

from stacksets.plan import Plan, Step
from stacksets.results import InstanceFailure, NodeResult, Report, State
from stacksets.run import Run, working_on


@dataclass(frozen=True)
class Park:
    """Nothing to do for `seconds`: resume me then."""

    seconds: float


@dataclass(frozen=True)
class Verdict:
    """How an exception out of a step reads in the report, and whether it stops the whole run."""

    message: str
    failures: list[InstanceFailure] = field(default_factory=list)
    stop: str = ""  # why every step not started yet is skipped ("" when the others carry on)


Work = Callable[[Any], Generator[Park, None, State]]


def walk(run: Run, plan: Plan, work: Work, verb: str, judge: Callable[[Exception], Verdict]) -> Report:
    report = run.report
    steps = plan.steps()
    for name in steps:
        report.results[name] = NodeResult(name)
        run.emit(name, State.PENDING)
    stop: list[tuple[Exception, str]] = []  # the error that stops the run, and why
    sorter = plan.sorter()
    running: dict[Future[None], str] = {}
    with ThreadPoolExecutor(max_workers=max(1, run.options.max_workers)) as pool:
        while sorter.is_active():
            for name in sorted(sorter.get_ready()):
                why_not = _why_not_start(report, steps[name], stop)
                if why_not:
                    run.finish(name, State.SKIPPED, why_not)
                    sorter.done(name)
                    continue
                running[pool.submit(_run_step, run, steps[name], work, verb, judge, stop)] = name
            if not running:
                continue
            finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for future in finished:
                sorter.done(running.pop(future))
    report.elapsed = run.since_start()
    if stop:
        raise stop[0][0]
    return report


def _why_not_start(report: Report, step: Step, stop: list[tuple[Exception, str]]) -> str:
    if stop:
        return f"stopped: {stop[0][1]}"
    blocker = next((d for d in step.depends_on if d in report.results
                    and report.results[d].state in (State.FAILED, State.SKIPPED)), None)  # fmt: skip
    if blocker is None:
        return ""
    return f"dependency {blocker} {'failed' if report.results[blocker].state is State.FAILED else 'was skipped'}"


def _run_step(run: Run, step: Step, work: Work, verb: str, judge: Callable[[Exception], Verdict],
              stop: list[tuple[Exception, str]]) -> None:  # fmt: skip
    with working_on(step.name):
        result = run.report.results[step.name]
        result.state = State.RUNNING
        run.emit(step.name, State.RUNNING, message=verb)
        try:
            steps = work(step)
            try:
                while True:
                    run.sleep(next(steps).seconds)
            except StopIteration as done:
                state = done.value
            run.finish(step.name, state, result.message)
        except Exception as error:  # noqa: BLE001 - one step's bug must not hide the other steps' outcomes
            verdict = judge(error)
            result.failures += verdict.failures
            if verdict.stop:
                stop.append((error, verdict.stop))
            run.finish(step.name, State.FAILED, verdict.message)
