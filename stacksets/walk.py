"""The readiness-driven walk over a plan: every step starts as soon as its dependencies are done, a step whose
dependency failed or was skipped is skipped with that reason, and one step's exception never hides the others'.

The walk knows nothing about AWS. A step's work is a generator that yields `Park(seconds)` whenever it has nothing
to do but wait (an operation running in AWS, a build, a busy StackSet), and returns the step's final State. Parked
steps hold no worker: the pool only bounds how many steps make calls at once, not how many wait at once. When no
step is making calls, the walk sleeps (the injected `sleep`) until the earliest parked step is due.
"""

from __future__ import annotations

import heapq
import itertools
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
Judge = Callable[[Exception], Verdict]


@dataclass
class _Parked:
    """A step's generator that yielded Park, and how long it asked to wait."""

    steps: Generator[Park, None, State]
    seconds: float


class _Walk:
    def __init__(self, run: Run, plan: Plan, work: Work, verb: str, judge: Judge) -> None:
        self.run, self.work, self.verb, self.judge = run, work, verb, judge
        self.steps = plan.steps()
        self.sorter = plan.sorter()
        urgency = plan.urgency()
        self.first = lambda name: (-urgency[name][0], -urgency[name][1], name)
        self.stop: list[tuple[Exception, str]] = []  # the error that stops the run, and why
        self.running: dict[Future[_Parked | None], str] = {}
        self.parked: list[tuple[float, int, str, Generator[Park, None, State]]] = []  # a heap by due time
        self._order = itertools.count()  # ties in due time resume in parking order

    def __call__(self, pool: ThreadPoolExecutor) -> None:
        while self.sorter.is_active():
            self._start_ready(pool)
            self._resume_due(pool)
            if self.running:
                self._collect(self._wait_for_work())
            elif self.parked:
                self.run.sleep(max(0.0, self.parked[0][0] - self.run.clock()))

    def _start_ready(self, pool: ThreadPoolExecutor) -> None:
        for name in sorted(self.sorter.get_ready(), key=self.first):
            why_not = self._why_not_start(self.steps[name])
            if why_not:
                self.run.finish(name, State.SKIPPED, why_not)
                self.sorter.done(name)
            else:
                self.running[pool.submit(self._advance, name, None)] = name

    def _resume_due(self, pool: ThreadPoolExecutor) -> None:
        now = self.run.clock()
        while self.parked and self.parked[0][0] <= now:
            _, _, name, steps = heapq.heappop(self.parked)
            self.running[pool.submit(self._advance, name, steps)] = name

    def _wait_for_work(self) -> set[Future[_Parked | None]]:
        # with steps parked, look up when the first is due even if no call has ended by then
        timeout = max(0.0, self.parked[0][0] - self.run.clock()) if self.parked else None
        finished, _ = wait(list(self.running), timeout=timeout, return_when=FIRST_COMPLETED)
        return finished

    def _collect(self, finished: set[Future[_Parked | None]]) -> None:
        for future in finished:
            name = self.running.pop(future)
            parked = future.result()
            if parked is None:
                self.sorter.done(name)
            else:
                due = self.run.clock() + parked.seconds
                heapq.heappush(self.parked, (due, next(self._order), name, parked.steps))

    def _why_not_start(self, step: Step) -> str:
        if self.stop:
            return f"stopped: {self.stop[0][1]}"
        results = self.run.report.results
        blocker = next((d for d in step.depends_on if d in results
                        and results[d].state in (State.FAILED, State.SKIPPED)), None)  # fmt: skip
        if blocker is None:
            return ""
        return f"dependency {blocker} {'failed' if results[blocker].state is State.FAILED else 'was skipped'}"

    def _advance(self, name: str, steps: Generator[Park, None, State] | None) -> _Parked | None:
        """Run a step until it parks (returned) or ends (None); on a pool thread, attributed to the step."""
        result = self.run.report.results[name]
        with working_on(name):
            try:
                if steps is None:
                    result.state = State.RUNNING
                    self.run.emit(name, State.RUNNING, message=self.verb)
                    steps = self.work(self.steps[name])
                return _Parked(steps, next(steps).seconds)
            except StopIteration as done:
                self.run.finish(name, done.value, result.message)
            except Exception as error:  # noqa: BLE001 - one step's bug must not hide the other steps' outcomes
                verdict = self.judge(error)
                result.failures += verdict.failures
                if verdict.stop:
                    self.stop.append((error, verdict.stop))
                self.run.finish(name, State.FAILED, verdict.message)
        return None


def walk(run: Run, plan: Plan, work: Work, verb: str, judge: Judge) -> Report:
    """Run `work` on every step of `plan` in readiness order; raises the error that stopped the run, if one did."""
    steps = plan.steps()
    for name, step in steps.items():
        run.report.results[name] = NodeResult(name)
        run.report.depends_on[name] = tuple(sorted(dep for dep in step.depends_on if dep in steps))
        run.emit(name, State.PENDING)
    walker = _Walk(run, plan, work, verb, judge)
    with ThreadPoolExecutor(max_workers=max(1, run.options.max_workers)) as pool:
        walker(pool)
    run.report.elapsed = run.since_start()
    if walker.stop:
        raise walker.stop[0][0]
    return run.report
