"""`deploy --timeline FILE.svg`: the Gantt chart of a run. The critical path on hand-made DAGs with hand-computed
answers, the chart of a hand-made report, and the charts of sandbox deploys (one failing), read back with
xml.etree as a viewer would."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import deploy
from stacksets.report import timeline_json
from stacksets.results import NodeResult, Report, State, TimelineEntry
from stacksets.timeline_svg import SVG_NS, critical_path, timeline_svg
from tests.conftest import ROOT

NS = {"svg": SVG_NS}
COMMITTED = ROOT / "docs" / "timeline.svg"
REGENERATE = ("python deploy.py deploy --sandbox --yes --sandbox-state none --state /tmp/timeline-state.json "
              "--timeline docs/timeline.svg")  # fmt: skip
DEV = "555555555555"


def entry(stackset: str, operation: str, start: float, end: float, result: str = "SUCCEEDED") -> TimelineEntry:
    return TimelineEntry(stackset, operation, start, end, result)


def chain(path: list[TimelineEntry]) -> list[tuple[str, str]]:
    return [(link.stackset, link.operation) for link in path]


# --------------------------------------------------------------------------------------------------------------------
# critical_path on hand-made DAGs

# boot -> {net, data}; net -> idle (nothing to do: no operations) -> app; data -> app; images (no dependency) -> app
DIAMOND = {"boot": (), "net": ("boot",), "data": ("boot",), "idle": ("net",), "app": ("idle", "data", "images"),
           "images": ()}  # fmt: skip


def test_the_critical_path_follows_the_latest_dependency_back_through_a_step_with_nothing_to_do():
    entries = [
        entry("boot", "create_stack_set", 0, 0),
        entry("boot", "create_stack_instances", 0, 100),
        entry("net", "create_stack_instances", 100, 400),  # ends last of what app waits for, via idle
        entry("data", "create_stack_instances", 100, 250),
        entry("images", "build rstudio", 0, 380),  # long, but ends before net
        entry("app", "create_stack_set", 400, 400),
        entry("app", "create_stack_instances", 400, 700),
    ]
    assert chain(critical_path(entries, DIAMOND)) == [
        ("boot", "create_stack_set"), ("boot", "create_stack_instances"), ("net", "create_stack_instances"),
        ("app", "create_stack_set"), ("app", "create_stack_instances")]  # fmt: skip


def test_the_critical_path_goes_through_a_longer_independent_step_when_it_ended_last():
    entries = [
        entry("boot", "create_stack_instances", 0, 100),
        entry("net", "create_stack_instances", 100, 200),
        entry("data", "create_stack_instances", 100, 250),
        entry("images", "build shiny", 0, 500),
        entry("images", "build rstudio", 0, 450),
        entry("app", "create_stack_instances", 510, 600),
        entry("net", "update_stack_instances", 600, 640),  # after app, but app does not wait for it: not a link
    ]
    # net's update ends last, so the chain ends there; going back, net's own create, then boot
    assert chain(critical_path(entries, DIAMOND)) == [
        ("boot", "create_stack_instances"), ("net", "create_stack_instances"), ("net", "update_stack_instances")]
    without_update = entries[:-1]
    assert chain(critical_path(without_update, DIAMOND)) == [("images", "build shiny"),
                                                               ("app", "create_stack_instances")]


def test_an_operation_that_started_before_its_dependency_ended_is_no_link():
    # a reattached operation (an interrupted run) may overlap what it would normally have waited for
    entries = [entry("boot", "create_stack_instances", 0, 100), entry("net", "create_stack_instances", 50, 300)]
    assert chain(critical_path(entries, DIAMOND)) == [("net", "create_stack_instances")]
    assert critical_path([], DIAMOND) == []


def test_instant_operations_of_one_step_link_in_the_order_they_were_recorded_not_by_name():
    entries = [entry("boot", "update_stack_set", 0, 0), entry("boot", "delete_stack_instances", 0, 0),
               entry("net", "create_stack_instances", 0, 60)]  # fmt: skip
    assert chain(critical_path(entries, DIAMOND)) == [
        ("boot", "update_stack_set"), ("boot", "delete_stack_instances"), ("net", "create_stack_instances")]


# --------------------------------------------------------------------------------------------------------------------
# The chart of a hand-made report


def parse(text: str) -> ET.Element:
    root = ET.fromstring(text.encode("utf-8"))
    assert root.tag == f"{{{SVG_NS}}}svg"
    return root


def with_class(root: ET.Element, name: str) -> list[ET.Element]:
    return [element for element in root.iter() if name in element.get("class", "").split()]


def bars(root: ET.Element) -> list[ET.Element]:
    return with_class(root, "bar")


def critical_bars(root: ET.Element) -> list[ET.Element]:
    """The bars marked critical, in the order of the chain their numbers give."""
    return sorted(with_class(root, "critical"), key=lambda bar: int(bar.get("data-critical") or 0))


def row_of(root: ET.Element) -> dict[int, str]:
    """id(bar) -> the StackSet of the row it is drawn in."""
    return {id(bar): row.get("data-stackset") or "" for row in with_class(root, "row") for bar in bars(row)}


def hand_made_report() -> Report:
    report = Report()
    states = {"boot": State.SUCCEEDED, "net": State.FAILED, "data": State.SUCCEEDED, "idle": State.SKIPPED,
              "app": State.SKIPPED, "images": State.UNCHANGED}  # fmt: skip
    report.results = {name: NodeResult(name, state) for name, state in states.items()}
    report.results["idle"].message = "dependency net failed"
    report.depends_on = DIAMOND
    report.timeline = [entry("boot", "create_stack_instances", 0, 120),
                       entry("data", "create_stack_instances", 120, 300),
                       entry("net", "create_stack_instances", 120, 900, "FAILED")]  # fmt: skip
    report.elapsed = 900
    return report


def test_the_chart_has_one_bar_per_operation_in_its_steps_row_with_a_tooltip():
    report = hand_made_report()
    root = parse(timeline_svg(report, simulated=True))
    drawn = bars(root)
    assert len(drawn) == len(report.timeline)
    rows = row_of(root)
    assert sorted((rows[id(bar)], bar.get("data-operation")) for bar in drawn) == [
        ("boot", "create_stack_instances"), ("data", "create_stack_instances"), ("net", "create_stack_instances")]
    for bar in drawn:
        tooltip = bar.find("svg:title", NS)
        assert tooltip is not None and (tooltip.text or "").startswith(f"{rows[id(bar)]}: {bar.get('data-operation')}")
    tooltip = next(bar.find("svg:title", NS) for bar in drawn if rows[id(bar)] == "net")
    assert tooltip is not None and "start 2.0 min, duration 13.0 min, FAILED" in (tooltip.text or "")
    labels = [text.text for text in with_class(root, "row-label")]
    assert sorted(labels) == sorted(report.results)  # every step a row, even those that ran nothing


def test_the_chart_marks_failed_operations_and_skipped_steps_by_pattern_and_label_not_colour_alone():
    root = parse(timeline_svg(hand_made_report(), simulated=True))
    failed = with_class(root, "failed")
    assert [row_of(root)[id(bar)] for bar in failed] == ["net"]
    assert failed[0].get("fill") == "url(#hatch-failed)" and with_class(root, "failed-mark")
    skipped_rows = [row.get("data-stackset") for row in with_class(root, "row") if "skipped" in row.get("class", "")]
    assert sorted(skipped_rows) == ["app", "idle"]
    statuses = {text.text for text in with_class(root, "status")}
    assert "SKIPPED: dependency net failed" in statuses and "FAILED" in statuses and "unchanged" in statuses
    assert root.find("svg:defs/svg:pattern[@id='hatch-failed']", NS) is not None


def test_the_chart_highlights_and_lists_the_critical_path():
    report = hand_made_report()
    root = parse(timeline_svg(report, simulated=True))
    expected = chain(critical_path(report.timeline, report.depends_on))
    assert expected == [("boot", "create_stack_instances"), ("net", "create_stack_instances")]
    rows = row_of(root)
    assert [(rows[id(bar)], bar.get("data-operation")) for bar in critical_bars(root)] == expected
    items = [text.text or "" for text in with_class(root, "critical-item")]
    assert [item.split(",")[0] for item in items] == ["1. boot: create_stack_instances",
                                                      "2. net: create_stack_instances"]


def test_the_axis_says_which_clock_and_ticks_in_minutes():
    report = hand_made_report()
    simulated, wall = parse(timeline_svg(report, simulated=True)), parse(timeline_svg(report, simulated=False))
    assert "simulated" in (with_class(simulated, "axis-label")[0].text or "")
    assert "wall-clock" in (with_class(wall, "axis-label")[0].text or "")
    ticks = [float(tick.text or "") for tick in with_class(simulated, "tick")]
    assert ticks[0] == 0 and ticks[-1] * 60 >= report.elapsed and len(ticks) <= 13
    assert timeline_svg(report, simulated=True) == timeline_svg(report, simulated=True)


def test_the_json_timeline_carries_each_operations_result():
    operations = json.loads(timeline_json(hand_made_report()))["operations"]
    assert [op["result"] for op in operations] == ["SUCCEEDED", "SUCCEEDED", "FAILED"]


# --------------------------------------------------------------------------------------------------------------------
# Through the CLI


@pytest.mark.parametrize("name", ["run.png", "run.txt", "missing-dir/run.svg"])
def test_a_timeline_the_cli_cannot_write_is_a_usage_error_before_anything_runs(workdir, capsys, name):
    assert deploy.main(["deploy", "--sandbox", "--yes", "--timeline", str(workdir / name)]) == 2
    err = capsys.readouterr().err
    assert "--timeline" in err and name.split("/")[-1] in err
    assert not (workdir / name).exists() and not (workdir / ".rstudio-fargate").exists()


def spy_on_reports(monkeypatch: pytest.MonkeyPatch) -> list[Report]:
    """The reports the CLI draws (the real drawing still runs)."""
    import stacksets.timeline_svg as module

    drawn: list[Report] = []
    real = module.timeline_svg

    def spy(report: Report, **kwargs: Any) -> str:
        drawn.append(report)
        return real(report, **kwargs)

    monkeypatch.setattr(module, "timeline_svg", spy)
    return drawn


def assert_chart_of(root: ET.Element, report: Report) -> None:
    rows = row_of(root)
    drawn = Counter((rows[id(bar)], bar.get("data-operation")) for bar in bars(root))
    assert drawn == Counter((e.stackset, e.operation) for e in report.timeline)
    critical = critical_path(report.timeline, report.depends_on)
    assert [(rows[id(bar)], bar.get("data-operation")) for bar in critical_bars(root)] == chain(critical)
    # the chain ends with the run's last operation and each link waited for the one before it
    assert critical[-1].end == max(e.end for e in report.timeline)
    for before, after in zip(critical, critical[1:]):
        assert before.end <= after.start + 1e-6


@pytest.mark.slow
def test_a_sandbox_deploy_with_a_failing_zone_draws_its_failure_and_what_it_skipped(workdir, capsys, monkeypatch):
    drawn = spy_on_reports(monkeypatch)
    failing = workdir / "failing-zone.yaml"
    failing.write_text(f'faults:\n  - {{stackset: rstudio-dev-zone, account: "{DEV}", resource: HostedZone, '
                       'times: 1, reason: "Rate exceeded while creating the hosted zone"}\n')  # fmt: skip
    path = workdir / "run.svg"
    assert deploy.main(["deploy", "--sandbox", "--yes", "--scenario", str(failing), "--timeline", str(path)]) == 1
    assert f"timeline written to {path}" in capsys.readouterr().err
    [report] = drawn
    root = parse(path.read_text(encoding="utf-8"))
    assert_chart_of(root, report)
    assert {row_of(root)[id(bar)] for bar in with_class(root, "failed")} == {"rstudio-dev-zone"}
    skipped = {row.get("data-stackset") for row in with_class(root, "row") if "skipped" in row.get("class", "")}
    assert skipped == {"rstudio-dev", "rstudio-dev-delegation"}
    assert "simulated" in (with_class(root, "axis-label")[0].text or "")


def chart_shape(root: ET.Element) -> tuple[Counter[tuple[str, str]], list[str], float]:
    """Its bars, the rows the critical path runs through (which of the parallel image builds ended a hair last
    varies) and when the last operation ended."""
    rows = row_of(root)
    every = Counter((rows[id(bar)], bar.get("data-operation") or "") for bar in bars(root))
    critical = [rows[id(bar)] for bar in critical_bars(root)]
    end = max(float(bar.get("data-end") or 0) for bar in bars(root))
    return every, critical, end


@pytest.mark.slow
def test_the_committed_readme_chart_is_what_a_sandbox_deploy_of_the_example_draws(workdir, capsys, monkeypatch):
    drawn = spy_on_reports(monkeypatch)
    path = workdir / "run.svg"
    assert deploy.main(["deploy", "--sandbox", "--yes", "--timeline", str(path)]) == 0
    [report] = drawn
    fresh = parse(path.read_text(encoding="utf-8"))
    assert_chart_of(fresh, report)
    assert not with_class(fresh, "failed") and not with_class(fresh, "skipped")
    # simulated operations end on polls whose timing shifts by fractions of a second between runs, so the bytes
    # differ: compare what the chart shows
    committed = parse(COMMITTED.read_text(encoding="utf-8"))
    (bars_now, critical_now, end_now), (bars_then, critical_then, end_then) = chart_shape(fresh), chart_shape(committed)
    stale = f"docs/timeline.svg is stale: regenerate it with `{REGENERATE}`"
    assert bars_then == bars_now, stale
    assert critical_then == critical_now, stale
    assert abs(end_then - end_now) <= 15, stale
    assert "docs/timeline.svg" in (ROOT / "README.md").read_text(encoding="utf-8")


def test_the_readme_command_regenerates_the_chart_where_the_test_looks():
    assert REGENERATE in (ROOT / "README.md").read_text(encoding="utf-8")
    assert Path("docs/timeline.svg") == COMMITTED.relative_to(ROOT)
