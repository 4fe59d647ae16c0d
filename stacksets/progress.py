"""Live progress across all StackSets: a redrawn table on a terminal, one plain line per change elsewhere (CI logs).

Columns: state, the API operation in progress, StackSets finished out of all in the run, and time since it started.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, TextIO


@dataclass
class Row:
    state: str = "PENDING"
    operation: str = ""
    done: int = 0
    total: int = 0
    started: float | None = None
    finished: float | None = None
    message: str = ""


class Progress:
    """Receives executor events (any object with stackset, state, operation, done, total, message attributes)."""

    def __init__(self, names: list[str], stream: TextIO | None = None, live: bool | None = None,
                 clock: Any = time.monotonic) -> None:  # fmt: skip
        self.stream = stream or sys.stdout
        self.live = self.stream.isatty() if live is None else live
        self.clock = clock
        self.rows = {name: Row() for name in names}
        self._lock = threading.Lock()
        self._drawn = 0

    def __call__(self, event: Any) -> None:
        with self._lock:
            row = self.rows.setdefault(event.stackset, Row())
            now = self.clock()
            state = getattr(event.state, "value", event.state)
            if row.started is None and state != "PENDING":
                row.started = now
            if state in ("SUCCEEDED", "FAILED", "SKIPPED", "UNCHANGED"):
                row.finished = now
            row.state = getattr(event.state, "value", event.state)  # the executor's State enum, or a plain string
            row.operation = getattr(event, "operation", "") or row.operation
            row.done, row.total = getattr(event, "done", row.done), getattr(event, "total", row.total)
            row.message = getattr(event, "message", "") or ""
            if self.live:
                self._redraw()
            else:
                self.stream.write(self._line(event.stackset, row) + "\n")
                self.stream.flush()

    def _elapsed(self, row: Row) -> str:
        if row.started is None:
            return ""
        seconds = (row.finished or self.clock()) - row.started
        return f"{int(seconds // 60)}:{int(seconds % 60):02d}"

    def _line(self, name: str, row: Row) -> str:
        finished = f"{row.done}/{row.total}" if row.total else ""
        text = f"{name:28} {row.state:10} {row.operation:24} {finished:>7} {self._elapsed(row):>6}"
        return f"{text}  {row.message}".rstrip()

    def _redraw(self) -> None:
        if self._drawn:
            self.stream.write(f"\x1b[{self._drawn}F\x1b[J")  # back to the table's first line, clear below
        lines = [f"{'StackSet':28} {'state':10} {'operation':24} {'sets':>7} {'time':>6}"]
        lines += [self._line(name, row) for name, row in self.rows.items()]
        self.stream.write("\n".join(lines) + "\n")
        self.stream.flush()
        self._drawn = len(lines)
