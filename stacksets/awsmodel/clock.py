"""Simulated time, shared by the model and the executor's injected clock and sleep: a 20-minute operation takes no
real time."""

from __future__ import annotations

import threading
import time


class ManualClock:
    """A clock that only sleep() advances: for single-threaded tests where every step is deterministic."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = start
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self.now

    def touch(self) -> None:
        """Called by the model on every request; only SimClock needs it."""

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self.now += max(0.0, seconds)

    def __getstate__(self) -> dict[str, float]:
        return {"now": self.now}  # a kept rehearsal needs the time it stopped at, not the lock

    def __setstate__(self, state: dict[str, float]) -> None:
        self.__init__(state["now"])  # type: ignore[misc]


class SimClock:
    """Virtual time for concurrent runs: sleep() blocks until virtual time reaches the wake-up, and time jumps to the
    earliest wake-up only once every thread is quiet (no request and no new sleep for `quiet_s` of real time).
    ManualClock would let one thread race through its polls before another thread has even started."""

    def __init__(self, quiet_s: float = 0.003, start: float = 0.0) -> None:
        self.now = start
        self.quiet_s = quiet_s
        self.sleeps: list[float] = []
        self._wakeups: list[float] = []
        self._cond = threading.Condition()
        self._activity = time.monotonic()

    def __call__(self) -> float:
        return self.now

    def touch(self) -> None:
        self._activity = time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            return
        with self._cond:
            self.sleeps.append(seconds)
            wake = self.now + seconds
            self._wakeups.append(wake)
            self.touch()
            while self.now < wake:
                self._cond.wait(timeout=self.quiet_s)
                if self.now < wake and time.monotonic() - self._activity >= self.quiet_s:
                    self.now = min(w for w in self._wakeups if w > self.now)
                    self.touch()
                    self._cond.notify_all()
            self._wakeups.remove(wake)
