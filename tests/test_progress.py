"""The progress views: the live table as a terminal shows it (every frame fed through a terminal emulator), the
plain lines of a CI log and the JSON lines of `--json`."""

from __future__ import annotations

import io
import json
import re
from datetime import datetime, timedelta, timezone

import pyte
import pytest
from rich.console import Console

from stacksets.plan import build_plan
from stacksets.progress import JsonLines, LiveView, Progress
from stacksets.results import Event, InstanceCounts, State
from tests.conftest import TEMPLATES

# what the image step says while it builds (stacksets/actions/images.py), here at its widest: 160 columns and more
LONG = ("building rstudio ctx-0123456789abcdef0123 (CodeBuild rstudio-images:5d41402a-bc4b-2a76-b971-9d911017c592), "
        "shiny ctx-fedcba9876543210fedc, bastion ctx-00112233445566778899 in 222222222222 / eu-west-1")


class Wall:
    """A wall clock for the plain lines' time of day."""

    def __init__(self) -> None:
        self.now = datetime(2026, 12, 1, 14, 0, 0, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.now


def event(name: str, state: str, operation: str = "", message: str = "", at: float = 0.0,
          instances: InstanceCounts | None = None, done: int = 0, total: int = 0) -> Event:  # fmt: skip
    return Event(name, State(state), operation, done, total, message, at, instances)


def a_deploy(names: list[str]) -> list[Event]:
    """The events of a deploy walk over `names`: every step PENDING (alphabetically, as the walk names them), then
    each runs an operation in turn (the image step with its long message), the last one unchanged."""
    events = [event(name, "PENDING") for name in sorted(names)]
    at = 0.0
    for i, name in enumerate(names):
        at += 30
        if name == "rstudio-images":
            events += [event(name, "RUNNING", "wait for builds", LONG, at), event(name, "SUCCEEDED", at=at + 600)]
            continue
        if i == len(names) - 1:
            events += [event(name, "RUNNING", message="deploy", at=at), event(name, "UNCHANGED", at=at + 1)]
            continue
        events += [event(name, "RUNNING", "create_stack_instances", "running", at, InstanceCounts(0, 0, 2, 2)),
                   event(name, "RUNNING", "create_stack_instances", "succeeded", at + 90, InstanceCounts(2, 0, 0, 2)),
                   event(name, "SUCCEEDED", at=at + 95, done=i + 1, total=len(names))]  # fmt: skip
    return events


def screen_lines(screen: pyte.Screen) -> list[str]:
    return [line.rstrip() for line in screen.display if line.strip()]


@pytest.mark.parametrize("width", [80, 160])
def test_every_frame_shows_one_header_and_one_line_per_stackset_at_any_width(cfg, width):
    names = build_plan(cfg, TEMPLATES).order()
    stream = io.StringIO()
    progress = Progress(names, stream=stream, live=True, width=width, height=60)
    screen = pyte.Screen(width, 60)
    terminal = pyte.Stream(screen)
    frames = 0
    for one in a_deploy(names):
        written = stream.tell()
        progress(one)
        frame = stream.getvalue()[written:]
        if not frame:
            assert one.state is State.PENDING  # the walk naming its steps: the first frame shows them all
            continue
        frames += 1
        terminal.feed(frame.replace("\n", "\r\n"))  # as the tty's output processing does
        lines = screen_lines(screen)
        assert [line.split()[0] for line in lines[1:-1]] == names, lines  # one line per StackSet, in plan order
        assert lines[0].split()[:3] == ["StackSet", "state", "operation"]
        assert sum(1 for line in lines if line.startswith("StackSet ")) == 1
        assert re.match(rf"\d+:\d\d · {len(names)} steps: ", lines[-1])  # the footer
    assert frames == len(a_deploy(names)) - len(names)
    assert "1 unchanged" in lines[-1] and f"{len(names) - 1} succeeded" in lines[-1]


@pytest.mark.parametrize("width", [80, 160])
def test_a_frame_is_exactly_as_wide_as_the_terminal_allows(cfg, width):
    names = build_plan(cfg, TEMPLATES).order()
    progress = Progress(names, stream=io.StringIO(), live=False)
    for one in a_deploy(names):  # until the image step is building, with the StackSets before it done
        progress(one)
        if one.stackset == "rstudio-images" and one.state is State.RUNNING:
            break
    console = Console(file=io.StringIO(), width=width, height=60, force_terminal=True)
    lines = console.render_lines(LiveView(progress.rows), console.options, pad=False)
    texts = ["".join(segment.text for segment in line) for line in lines]
    assert len(texts) == len(names) + 2 and all(len(text) <= width for text in texts)
    images = next(text for text in texts if text.startswith("rstudio-images"))
    assert images.rstrip().endswith("…") == (width == 160) and "wait for builds" in images
    assert ("building rstudio" in images) == (width == 160)  # no room for messages at 80 columns


def test_more_stacksets_than_lines_show_the_failed_and_running_first():
    names = [f"rstudio-s{i:02d}" for i in range(30)]
    progress = Progress(names, stream=io.StringIO(), live=False)
    for i, name in enumerate(names):
        progress(event(name, "SUCCEEDED" if i < 20 else "RUNNING", at=i))
    progress(event("rstudio-s03", "FAILED", at=40))
    console = Console(file=io.StringIO(), width=100, height=12, force_terminal=True)
    lines = ["".join(s.text for s in line) for line in console.render_lines(LiveView(progress.rows), pad=False)]
    shown = [line.split()[0] for line in lines[1:-1]]
    assert len(lines) == 12 and shown[0] == "rstudio-s03" and "rstudio-s20" in shown and "rstudio-s00" not in shown
    assert lines[-1].endswith("(20 not shown)")


def test_a_rows_counts_are_its_own_stack_instances_not_the_runs_stacksets():
    stream = io.StringIO()
    progress = Progress(["rstudio-central", "rstudio-logs"], stream=stream, live=False, wall=Wall())
    progress(event("rstudio-central", "SUCCEEDED", done=1, total=2))
    progress(event("rstudio-logs", "RUNNING", "create_stack_instances", "running", 10.0,
                   InstanceCounts(3, 1, 2, 6), done=1, total=2))  # fmt: skip
    last = stream.getvalue().splitlines()[-1]
    assert "rstudio-logs RUNNING create_stack_instances 3 ok, 1 failed, 2 in progress of 6" in last
    assert "1/2" not in last


def test_a_row_shows_only_the_operation_running_now():
    """A deploy after a prune walks the plan twice: the second walk's unchanged row ran nothing, whatever it ran in
    the first."""
    stream = io.StringIO()
    progress = Progress(["rstudio-logs"], stream=stream, live=False, wall=Wall())
    progress(event("rstudio-logs", "PENDING"))
    progress(event("rstudio-logs", "RUNNING", "delete_stack_instances", "running", 1.0))
    progress(event("rstudio-logs", "SUCCEEDED", at=100.0))
    progress(event("rstudio-logs", "PENDING", at=101.0))
    progress(event("rstudio-logs", "RUNNING", message="deploy", at=102.0))
    progress(event("rstudio-logs", "UNCHANGED", at=103.0))
    lines = stream.getvalue().splitlines()
    assert lines[-2].split()[1:5] == ["rstudio-logs", "UNCHANGED", "-", "-"], lines
    assert lines[-1].endswith("run: 1:43 · 1 step: 1 unchanged")  # the second walk's totals alone
    assert "delete_stack_instances" not in lines[-2]


def test_plain_lines_are_one_per_change_with_the_utc_time_of_day():
    stream, wall = io.StringIO(), Wall()
    progress = Progress(["rstudio-central", "rstudio-data"], stream=stream, wall=wall)  # a StringIO is no terminal
    for name in ("rstudio-central", "rstudio-data"):
        progress(event(name, "PENDING"))
    running = InstanceCounts(0, 0, 1, 1)
    for seconds in (15, 30, 45):  # three polls that find nothing new: one line
        wall.now += timedelta(seconds=15)
        progress(event("rstudio-central", "RUNNING", "create_stack_instances", "running", seconds, running))
    wall.now = datetime(2026, 12, 1, 15, 4, 5, tzinfo=timezone(timedelta(hours=2)))  # a local clock is shown in UTC
    progress(event("rstudio-central", "RUNNING", "create_stack_instances", "succeeded", 75.0,
                   InstanceCounts(1, 0, 0, 1)))  # fmt: skip
    progress(event("rstudio-central", "SUCCEEDED", at=76.0))
    progress(event("rstudio-data", "SKIPPED", message="dependency rstudio-central failed", at=76.0))
    lines = stream.getvalue().splitlines()
    assert "\x1b" not in stream.getvalue()
    assert all(re.match(r"\d\d:\d\d:\d\d ", line) for line in lines)
    assert [line[:8] for line in lines] == ["14:00:15", "13:04:05", "13:04:05", "13:04:05", "13:04:05"]
    assert lines[0][9:] == ("rstudio-central RUNNING create_stack_instances 0 ok, 0 failed, 1 in progress of 1 0:00  "
                            "running")  # fmt: skip
    assert lines[2][9:] == "rstudio-central SUCCEEDED - 1 ok, 0 failed, 0 in progress of 1 1:01"
    assert lines[3][9:] == "rstudio-data SKIPPED - - 0:00  dependency rstudio-central failed"
    assert lines[4][9:] == ("run: 1:16 · 2 steps: 1 succeeded, 1 skipped · instances: 1 ok, 0 failed, 0 in progress "
                            "of 1")  # fmt: skip


def test_json_lines_are_one_object_per_event():
    stream = io.StringIO()
    sink = JsonLines(stream, wall=Wall())
    sink(event("rstudio-logs", "RUNNING", "update_stack_set", "running", 12.5, InstanceCounts(1, 0, 1, 2), 3, 15))
    sink(event("rstudio-logs", "FAILED", message="update_stack_set op-1 FAILED: see below", at=20.0, done=4, total=15))
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first == {"time": "2026-12-01T14:00:00+00:00", "elapsed_s": 12.5, "stackset": "rstudio-logs",
                     "state": "RUNNING", "operation": "update_stack_set", "message": "running",
                     "instances": {"succeeded": 1, "failed": 0, "in_progress": 1, "total": 2},
                     "run": {"done": 3, "total": 15}}  # fmt: skip
    assert second["state"] == "FAILED" and second["instances"] is None and second["run"] == {"done": 4, "total": 15}
