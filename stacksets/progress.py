"""Live progress of a walk over the plan, from the executor's events: a rich table redrawn in place on a terminal,
one timestamped line per change elsewhere (CI logs), or one JSON object per event (`--json`).

The table has one row per StackSet: its state, the operation running now, its stack instances succeeded / failed /
in progress / total (read while an operation runs), and how long it has been at work; a footer holds the run's
totals. Every cell is cut to its column with an ellipsis, never wrapped: a row that wrapped would take two lines and
the redraw, which moves up by rows, would leave the top of the old table behind.

Elapsed times come from the events (the executor's clock: simulated in a rehearsal); the plain lines' time of day
from `wall`, in UTC.
"""

from __future__ import annotations

import atexit
import json
import sys
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Iterable, TextIO

from rich.console import Console, ConsoleOptions, Group, RenderResult
from rich.live import Live
from rich.table import Table
from rich.text import Text

from stacksets.results import Event, InstanceCounts

FINAL = ("SUCCEEDED", "FAILED", "SKIPPED", "UNCHANGED")
# when the rows outnumber the terminal's lines, these are shown first: what one watches, then what is left to do
SHOWN_FIRST = {"FAILED": 0, "RUNNING": 1, "PENDING": 2}

# column widths of the live table; the StackSet name and the message share what is left of the terminal's width
# (at 80 columns: all of it to names as long as rstudio-prod-delegation)
STATE_W, OPERATION_W, COUNT_W, TIME_W = 9, 16, 4, 7
NAME_MIN_W, MESSAGE_MIN_W = 12, 12


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class Row:
    state: str = "PENDING"
    operation: str = ""  # the operation running now; "" between operations and once the StackSet is done
    instances: InstanceCounts | None = None
    started: float | None = None  # event times (seconds since the run started)
    last: float = 0.0
    message: str = ""

    def elapsed(self) -> str:
        if self.started is None:
            return ""
        seconds = int(self.last - self.started)
        hours, rest = divmod(seconds, 3600)
        return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


@dataclass
class Rows:
    """The rows of the walk under way, in plan order; a walk starts with a PENDING event for each of its steps."""

    order: dict[str, int]
    rows: dict[str, Row] = field(default_factory=dict)
    at: float = 0.0

    def apply(self, event: Event) -> Row:
        state = getattr(event.state, "value", event.state)  # the executor's State enum, or a plain string
        if self.finished() and state == "PENDING":
            self.rows, self.at = {}, 0.0  # the next walk of the command (deploy after prune, the rehearsal's re-run)
        row = self.rows.setdefault(event.stackset, Row())
        self.at = max(self.at, event.at)
        if row.started is None and state != "PENDING":
            row.started = event.at
        if state not in FINAL or row.state not in FINAL:
            row.last = event.at
        row.state = state
        row.operation = event.operation if state == "RUNNING" else ""
        row.instances = event.instances or row.instances
        row.message = event.message if event.message or state != "RUNNING" else row.message
        return row

    def in_order(self) -> list[tuple[str, Row]]:
        """Plan order (the walk names its steps alphabetically); steps the plan did not name last."""
        last = len(self.order)
        return sorted(self.rows.items(), key=lambda item: (self.order.get(item[0], last), item[0]))

    def finished(self) -> bool:
        return bool(self.rows) and all(row.state in FINAL for row in self.rows.values())

    def totals(self) -> str:
        """The run so far in one line, the most telling first (a narrow terminal cuts the end)."""
        by_state = {state: 0 for state in ("FAILED", "RUNNING", "PENDING", "SUCCEEDED", "UNCHANGED", "SKIPPED")}
        for row in self.rows.values():
            by_state[row.state] = by_state.get(row.state, 0) + 1
        states = ", ".join(f"{count} {state.lower()}" for state, count in by_state.items() if count)
        counted = [row.instances for row in self.rows.values() if row.instances is not None]
        instances = ""
        if counted:
            instances = (f" · instances: {sum(c.succeeded for c in counted)} ok, {sum(c.failed for c in counted)} "
                         f"failed, {sum(c.in_progress for c in counted)} in progress of "
                         f"{sum(c.total for c in counted)}")  # fmt: skip
        steps = f"{len(self.rows)} step{'' if len(self.rows) == 1 else 's'}"
        return f"{Row(started=0.0, last=self.at).elapsed()} · {steps}: {states}{instances}"


def counts_text(counts: InstanceCounts | None) -> str:
    if counts is None:
        return ""
    return f"{counts.succeeded} ok, {counts.failed} failed, {counts.in_progress} in progress of {counts.total}"


class LiveView:
    """The table as a rich renderable, laid out for the width it is rendered at."""

    def __init__(self, rows: Rows) -> None:
        self.rows = rows

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        width = options.max_width
        rows = self.rows.in_order()
        room = (options.height or console.height) - 2  # the header and the footer
        hidden = 0
        if len(rows) > room > 0:
            kept = {name for name, _ in sorted(rows, key=lambda item: SHOWN_FIRST.get(item[1].state, 3))[:room]}
            hidden = len(rows) - len(kept)
            rows = [(name, row) for name, row in rows if name in kept]
        yield Group(self._table(width, rows), self._footer(hidden))

    def _table(self, width: int, rows: list[tuple[str, Row]]) -> Table:
        fixed = STATE_W + OPERATION_W + 4 * COUNT_W + TIME_W
        gaps = 8  # one space after every column but the last
        free = width - fixed - gaps
        longest = max([len("StackSet"), *(len(name) for name, _ in rows)])
        name_w = max(NAME_MIN_W, min(longest, free))
        message_w = free - name_w - 1
        table = Table(box=None, padding=(0, 1, 0, 0), pad_edge=False, show_edge=False, expand=False,
                      collapse_padding=True)  # fmt: skip
        cut = {"no_wrap": True, "overflow": "ellipsis"}
        table.add_column("StackSet", width=name_w, **cut)  # type: ignore[arg-type]
        table.add_column("state", width=STATE_W, **cut)  # type: ignore[arg-type]
        table.add_column("operation", width=OPERATION_W, **cut)  # type: ignore[arg-type]
        for header in ("ok", "fail", "run", "of"):
            table.add_column(header, width=COUNT_W, justify="right", **cut)  # type: ignore[arg-type]
        table.add_column("time", width=TIME_W, justify="right", **cut)  # type: ignore[arg-type]
        if message_w >= MESSAGE_MIN_W:
            table.add_column("", width=message_w, **cut)  # type: ignore[arg-type]
        for name, row in rows:
            counts = row.instances
            numbers = ([str(counts.succeeded), str(counts.failed), str(counts.in_progress), str(counts.total)]
                       if counts is not None else ["", "", "", ""])  # fmt: skip
            cells = [name, row.state, short_operation(row.operation), *numbers, row.elapsed()]
            if message_w >= MESSAGE_MIN_W:
                cells.append(row.message)
            table.add_row(*(Text(cell, style=_style(row.state) if i == 1 else "") for i, cell in enumerate(cells)))
        return table

    def _footer(self, hidden: int) -> Text:
        more = f" ({hidden} not shown)" if hidden else ""
        return Text(self.rows.totals() + more, no_wrap=True, overflow="ellipsis", style="bold")


def short_operation(operation: str) -> str:
    """The API action without its "stack" (create_instances, update_set, detect_set_drift): the live table's
    operation column fits them all at 80 columns; the plain and JSON lines keep the API's name."""
    return operation.replace("_stack_", "_")


def _style(state: str) -> str:
    return {"FAILED": "red", "SKIPPED": "yellow", "SUCCEEDED": "green", "RUNNING": "cyan"}.get(state, "")


class Progress:
    """Receives executor events: a live table (`live`, default: when `stream` is a terminal) or plain lines."""

    def __init__(self, names: Iterable[str], stream: TextIO | None = None, live: bool | None = None,
                 wall: Callable[[], datetime] = utc_now, width: int | None = None,
                 height: int | None = None) -> None:  # fmt: skip
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty() if live is None else live
        self.wall = wall
        self.rows = Rows({name: i for i, name in enumerate(names)})
        self._lock = threading.Lock()
        self._written: dict[str, tuple[str, str]] = {}  # plain mode: what was last written per StackSet
        self._console = Console(file=self.stream, force_terminal=self.live or None, width=width, height=height)
        self._live: Live | None = None

    def __call__(self, event: Event) -> None:
        with self._lock:
            row = self.rows.apply(event)
            if self.live:
                if row.state != "PENDING":  # a walk names all its steps before it starts one: draw them at once
                    self._draw()
            else:
                self._plain(event.stackset, row)

    def close(self) -> None:
        """Leave the last frame on the terminal and give the cursor back."""
        if self._live is not None:
            self._live.stop()
            self._live = None

    def _draw(self) -> None:
        if self._live is None:
            real = self.stream in (sys.stdout, sys.stderr)  # other output while the table stands goes above it
            self._live = Live(LiveView(self.rows), console=self._console, auto_refresh=False,
                              redirect_stdout=real, redirect_stderr=real)  # fmt: skip
            self._live.start()
            atexit.register(self.close)  # an exception that ends the command must not leave the cursor hidden
        self._live.refresh()
        if self.rows.finished():
            self.close()  # the walk is over: the report that follows is printed below the final frame

    def _plain(self, name: str, row: Row) -> None:
        """A line when the row changed (state, operation, counts or message; not the time alone): a step that is
        still PENDING has not changed."""
        text = f"{name} {row.state} {row.operation or '-'} {counts_text(row.instances) or '-'}"
        lines = []
        if row.state != "PENDING" and self._written.get(name) != (text, row.message):
            self._written[name] = (text, row.message)
            lines.append(f"{text} {row.elapsed() or '-'}  {row.message}".rstrip())
        if self.rows.finished():
            lines.append(f"run: {self.rows.totals()}")
            self._written.clear()
        stamp = self.wall().astimezone(timezone.utc).strftime("%H:%M:%S")
        self.stream.write("".join(f"{stamp} {line}\n" for line in lines))
        self.stream.flush()


class JsonLines:
    """`--json`: every event as one JSON object on its own line (JSON Lines), nothing else on the stream."""

    def __init__(self, stream: TextIO, wall: Callable[[], datetime] = utc_now) -> None:
        self.stream = stream
        self.wall = wall
        self._lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        counts = event.instances
        line = json.dumps({
            "time": self.wall().astimezone(timezone.utc).isoformat(timespec="seconds"),
            "elapsed_s": round(event.at, 3),
            "stackset": event.stackset,
            "state": getattr(event.state, "value", event.state),
            "operation": event.operation,
            "message": event.message,
            "instances": None if counts is None else {"succeeded": counts.succeeded, "failed": counts.failed,
                                                      "in_progress": counts.in_progress, "total": counts.total},
            "run": {"done": event.done, "total": event.total},
        }, sort_keys=True)  # fmt: skip
        with self._lock:
            self.stream.write(line + "\n")
            self.stream.flush()
