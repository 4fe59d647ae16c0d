from __future__ import annotations

import io
from types import SimpleNamespace

from stacksets.progress import Progress


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def event(stackset: str, state: str, **extra: object) -> SimpleNamespace:
    return SimpleNamespace(stackset=stackset, state=state, operation=extra.get("operation", ""),
                           done=extra.get("done", 0), total=extra.get("total", 0), message=extra.get("message", ""))


def test_plain_lines_when_not_on_a_terminal():
    stream, clock = io.StringIO(), FakeClock()
    progress = Progress(["rstudio-central", "rstudio-data"], stream=stream, live=False, clock=clock)
    progress(event("rstudio-central", "RUNNING", operation="CREATE", total=1))
    clock.now = 75
    progress(event("rstudio-central", "SUCCEEDED", operation="CREATE", done=1, total=1))
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2 and "\x1b" not in stream.getvalue()
    assert lines[1].split()[:4] == ["rstudio-central", "SUCCEEDED", "CREATE", "1/1"]
    assert lines[1].split()[4] == "1:15"


def test_live_table_redraws_in_place():
    stream = io.StringIO()
    progress = Progress(["a", "b"], stream=stream, live=True, clock=FakeClock())
    progress(event("a", "RUNNING"))
    progress(event("b", "FAILED", message="dependency a failed"))
    output = stream.getvalue()
    assert output.count("\x1b[3F") == 1  # header + 2 rows redrawn once
    assert "dependency a failed" in output.splitlines()[-1]
