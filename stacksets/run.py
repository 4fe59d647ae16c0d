"""One public executor call (diff, deploy, status, drift, destroy): its report, clock, progress events and caches.

A fresh `Run` per call means nothing leaks from one command into the next unless it is passed on explicitly.
Calls are attributed to the StackSet being worked on through a context variable, so helpers deep inside an action
never need to be told which StackSet they serve.
"""

from __future__ import annotations

import threading
from collections import Counter
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from stacksets.pacing import Pacer
from stacksets.results import Event, InstanceCounts, Report, State, TimelineEntry

CURRENT_STACKSET: ContextVar[str] = ContextVar("current_stackset", default="")


@dataclass
class Options:
    # per operation (and per batch of image builds), from its start: a bootstrap over 50 accounts at 25 % concurrency
    # with ACM, ECS and NAT stacks behind it runs for hours, and giving up early only leaves it to the next run
    timeout_s: float = 21600
    poll_s: float = 15
    max_workers: int = 8  # concurrent API calls; StackSets waiting on an operation hold no worker
    state_path: Path = Path(".rstudio-fargate/state.json")
    staging_bucket: str | None = None
    prune: bool = False


class Run:
    def __init__(self, clients: Any, options: Options, *, clock: Callable[[], float], sleep: Callable[[float], None],
                 random: Callable[[], float], on_event: Callable[[Event], None], total: int) -> None:  # fmt: skip
        self.clients = clients
        self.options = options
        self.clock = clock
        self.sleep = sleep
        self.random = random
        self.on_event = on_event
        self.report = Report()
        self.started = clock()
        self.total = total
        self.done = 0
        self.lock = threading.Lock()
        self.outputs: dict[tuple[str, str, str], dict[str, str]] = {}  # (stackset, account, region) -> outputs
        self.org_cache: dict[str, Any] = {}  # OU -> organization.Members under it
        self.management_account: str | None = None
        self.pacers: dict[int, Pacer] = {}  # id(client) -> its pacing (clients are cached, one per account/service)
        self.waiting = 0  # requests per round of the operations and builds being polled now (operations.backoff)

    def pacer(self, client: Any) -> Pacer:
        with self.lock:
            return self.pacers.setdefault(id(client), Pacer(self.clock))

    def since_start(self, at: float | None = None) -> float:
        return (self.clock() if at is None else at) - self.started

    def emit(self, stackset: str, state: State, operation: str = "", message: str = "",
             instances: InstanceCounts | None = None) -> None:  # fmt: skip
        self.on_event(Event(stackset, state, operation, self.done, self.total, message, self.since_start(),
                            instances))  # fmt: skip

    def count(self, api: str, mutating: bool) -> None:
        """One request (every attempt counts), attributed to the StackSet being worked on."""
        with self.lock:
            self.report.calls_by_stackset.setdefault(CURRENT_STACKSET.get(), Counter())[api] += 1
            if mutating:
                self.report.calls[api] += 1

    def timeline(self, stackset: str, operation: str, start: float, succeeded: bool = True) -> None:
        """An operation that ran from `start` (clock seconds) until now."""
        with self.lock:
            self.report.timeline.append(TimelineEntry(stackset, operation, self.since_start(start), self.since_start(),
                                                      "SUCCEEDED" if succeeded else "FAILED"))  # fmt: skip

    def finish(self, name: str, state: State, message: str) -> None:
        result = self.report.results[name]
        result.state, result.message = state, message
        with self.lock:
            self.done += 1
        self.emit(name, state, message=message)


@contextmanager
def working_on(stackset: str) -> Iterator[None]:
    """Attribute every call made inside to `stackset` (undone on exit, so a pool thread carries nothing over)."""
    token = CURRENT_STACKSET.set(stackset)
    try:
        yield
    finally:
        CURRENT_STACKSET.reset(token)
