"""A run's operations as a Gantt chart in SVG: one row per step, one bar per operation, failed operations and skipped
steps marked, the critical path highlighted and listed. Pure: a Report in, the same bytes out for the same report
(no AWS, no clock, no plotting library), so a chart of a sandbox run can be committed and compared."""

from __future__ import annotations

import graphlib
import math
import xml.etree.ElementTree as ET
from collections import Counter
from typing import Callable, Iterable, Mapping

from stacksets.results import Report, State, TimelineEntry

SVG_NS = "http://www.w3.org/2000/svg"
# simulated seconds are sums of floats: a dependent that starts "when" its dependency ended may read a hair earlier
_EPSILON = 1e-6
_TICK_STEPS_MIN = (0.25, 0.5, 1, 2, 5, 10, 15, 20, 30, 60, 120, 240, 480, 960)
_MAX_TICKS = 12

ROW_H, BAR_H, CHART_W, PAD = 22, 14, 880, 12
CHAR_W = 7  # a generous average advance of 12 px sans-serif, to size the label and status columns
STATUS_CHARS = 58
COLOURS = {"bar": "#4c78a8", "critical": "#f58518", "failed": "#d62728", "skipped": "#9e9e9e", "text": "#222",
           "muted": "#757575", "grid": "#dddddd", "stripe": "#f4f4f4"}  # fmt: skip


# --------------------------------------------------------------------------------------------------------------------
# The critical path


def _ancestors(depends_on: Mapping[str, Iterable[str]]) -> dict[str, set[str]]:
    """Every step each step waits for, directly or through others."""
    graph = {name: tuple(deps) for name, deps in depends_on.items()}
    found: dict[str, set[str]] = {}
    for name in graphlib.TopologicalSorter(graph).static_order():
        found[name] = set()
        for dep in graph.get(name, ()):
            found[name] |= {dep} | found[dep]
    return found


def critical_path(entries: Iterable[TimelineEntry], depends_on: Mapping[str, Iterable[str]]) -> list[TimelineEntry]:
    """The chain of operations that determined when the run ended, first to last.

    It ends with the operation that finished last. Going back, each link is the operation that ended last, no later
    than the link started, among the earlier operations of the same step and those of the steps it waits for
    (`depends_on`, the plan's DAG; through steps with nothing to do, which have no operations). The chain stops at an
    operation nothing it waited for ran before. Ties go to the later-recorded operation of the same step, then by
    name, so the answer does not depend on thread timing."""
    recorded = list(entries)
    if not recorded:
        return []
    ancestors = _ancestors(depends_on)
    # the order of recording is deterministic within one step (its operations run one after the other), not across
    # steps, whose operations end on different threads
    index: dict[int, int] = {}
    seen: Counter[str] = Counter()
    for entry in recorded:
        index[id(entry)] = seen[entry.stackset]
        seen[entry.stackset] += 1

    def rank(entry: TimelineEntry) -> tuple[float, float, str, int, str]:
        return entry.end, entry.start, entry.stackset, index[id(entry)], entry.operation

    current = max(recorded, key=rank)
    chain = [current]
    while True:
        waited_for = ancestors.get(current.stackset, set())
        before = [entry for entry in recorded
                  if entry.end <= current.start + _EPSILON
                  and (entry.stackset in waited_for
                       or (entry.stackset == current.stackset and index[id(entry)] < index[id(current)]))]  # fmt: skip
        if not before:
            return chain[::-1]
        current = max(before, key=rank)
        chain.append(current)


# --------------------------------------------------------------------------------------------------------------------
# Drawing


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"


def _n(value: float) -> str:
    return f"{value:.1f}"


def _clip(text: str, chars: int) -> str:
    return text if len(text) <= chars else text[: chars - 1] + "\u2026"


def _tick_step(span_s: float) -> float:
    """Minutes between ticks: the smallest round step that needs at most _MAX_TICKS ticks."""
    minutes = span_s / 60
    return next((step for step in _TICK_STEPS_MIN if minutes / step <= _MAX_TICKS), _TICK_STEPS_MIN[-1])


def _el(parent: ET.Element, tag: str, text: str | None = None, **attributes: str | float) -> ET.Element:
    element = ET.SubElement(parent, tag, {key.rstrip("_").replace("_", "-"): (value if isinstance(value, str)
                                                                               else _n(value))
                                          for key, value in attributes.items()})  # fmt: skip
    if text is not None:
        element.text = text
    return element


def _lanes(entries: list[TimelineEntry]) -> list[list[TimelineEntry]]:
    """One step's operations (sorted by start) in as few lanes as keep them from overlapping: the image step runs its
    builds side by side."""
    lanes: list[list[TimelineEntry]] = []
    for entry in entries:
        lane = next((lane for lane in lanes if lane[-1].end <= entry.start + _EPSILON), None)
        if lane is None:
            lanes.append([entry])
        else:
            lane.append(entry)
    return lanes or [[]]


def _rows(report: Report, entries: list[TimelineEntry]) -> list[str]:
    """Steps with operations by their first start, then the steps that ran none (skipped, unchanged) by name."""
    first: dict[str, float] = {}
    for entry in entries:
        first[entry.stackset] = min(first.get(entry.stackset, math.inf), entry.start)
    idle = sorted(set(report.results) - set(first))
    return sorted(first, key=lambda name: (first[name], name)) + idle


def _status(report: Report, name: str) -> tuple[str, str]:
    """(the row's status text, its full version for the tooltip)."""
    result = report.results.get(name)
    if result is None:
        return "", ""
    text = result.state.value if result.state is not State.UNCHANGED else "unchanged"
    full = f"{text}: {result.message}" if result.message else text
    return _clip(full, STATUS_CHARS), full


def _defs(svg: ET.Element) -> None:
    defs = _el(svg, "defs")
    for name, colour in (("failed", COLOURS["failed"]), ("skipped", COLOURS["skipped"])):
        pattern = _el(defs, "pattern", id=f"hatch-{name}", patternUnits="userSpaceOnUse", width=6, height=6,
                      patternTransform="rotate(45)")  # fmt: skip
        _el(pattern, "rect", width=6, height=6, fill=colour if name == "failed" else "#eeeeee")
        _el(pattern, "line", x1=0, y1=0, x2=0, y2=6, stroke="#ffffff" if name == "failed" else colour,
            stroke_width=2.5)  # fmt: skip


def _legend(svg: ET.Element, x: float, y: float) -> None:
    items = (("operation", {"fill": COLOURS["bar"]}),
             ("critical path (thick outline, numbered below)", {"fill": COLOURS["critical"], "stroke": "#000000",
                                                                "stroke-width": "2.5"}),
             ("failed operation (hatched, \u2717)", {"fill": "url(#hatch-failed)"}),
             ("skipped step (hatched row)", {"fill": "url(#hatch-skipped)"}))  # fmt: skip
    legend = _el(svg, "g", class_="legend")
    for label, style in items:
        swatch = _el(legend, "rect", x=x, y=y - 10, width=18, height=12)
        swatch.attrib.update(style)
        _el(legend, "text", label, x=x + 24, y=y, fill=COLOURS["text"])
        x += 24 + CHAR_W * len(label) + 20


def timeline_svg(report: Report, simulated: bool, title: str = "") -> str:
    """The chart of `report`; `simulated` says the times are the sandbox's clock, not wall time."""
    entries = sorted(report.timeline, key=lambda e: (e.start, e.end, e.stackset, e.operation))
    critical = critical_path(report.timeline, report.depends_on)
    position = {id(entry): number for number, entry in enumerate(critical, start=1)}
    rows = _rows(report, entries)
    by_step: dict[str, list[TimelineEntry]] = {}
    for entry in entries:
        by_step.setdefault(entry.stackset, []).append(entry)
    lanes = {name: _lanes(by_step.get(name, [])) for name in rows}
    row_top, y = {}, 64.0
    for name in rows:
        row_top[name] = y
        y += ROW_H * len(lanes[name])
    end_s = max([report.elapsed, *(entry.end for entry in entries)]) or 60.0
    step_min = _tick_step(end_s)
    span_s = math.ceil(end_s / 60 / step_min) * step_min * 60

    label_w = CHAR_W * max([len(name) for name in rows] + [8]) + 2 * PAD
    status_w = CHAR_W * STATUS_CHARS
    left, top, chart_bottom = label_w, 64, y
    legend_lines = 2 + len(critical)
    width = left + CHART_W + PAD + status_w
    height = chart_bottom + 44 + 18 * legend_lines + PAD

    def x_of(seconds: float) -> float:
        return left + CHART_W * seconds / span_s

    svg = ET.Element("svg", {"xmlns": SVG_NS, "width": str(width), "height": str(height),
                             "viewBox": f"0 0 {width} {height}", "font-family": "sans-serif", "font-size": "12"})
    ok = "ok" if report.ok else "FAILED"
    heading = title or (f"{len(rows)} steps, {len(entries)} operations, {_minutes(end_s)}"
                        f" ({'simulated' if simulated else 'wall'} time), {ok}")  # fmt: skip
    _el(svg, "title", heading)
    _defs(svg)
    _el(svg, "rect", x=0, y=0, width=width, height=height, fill="#ffffff")
    _el(svg, "text", heading, x=PAD, y=22, font_size="15", font_weight="bold", fill=COLOURS["text"])
    _legend(svg, PAD, 46)

    grid = _el(svg, "g", class_="axis")
    tick = 0.0
    while tick <= span_s / 60 + _EPSILON:
        x = x_of(tick * 60)
        _el(grid, "line", x1=x, y1=top, x2=x, y2=chart_bottom + 5, stroke=COLOURS["grid"])
        _el(grid, "text", f"{tick:g}", class_="tick", x=x, y=chart_bottom + 18, text_anchor="middle",
            fill=COLOURS["text"])  # fmt: skip
        tick += step_min
    _el(grid, "line", x1=left, y1=chart_bottom, x2=left + CHART_W, y2=chart_bottom, stroke=COLOURS["text"])
    clock = "simulated minutes (sandbox clock)" if simulated else "wall-clock minutes"
    _el(grid, "text", f"{clock} since the run started", class_="axis-label", x=left + CHART_W / 2,
        y=chart_bottom + 34, text_anchor="middle", fill=COLOURS["text"])  # fmt: skip

    for number, name in enumerate(rows):
        y, row_h = row_top[name], ROW_H * len(lanes[name])
        result = report.results.get(name)
        skipped = result is not None and result.state is State.SKIPPED
        row = _el(svg, "g", class_="row skipped" if skipped else "row", data_stackset=name)
        if number % 2:
            _el(row, "rect", x=0, y=y, width=width, height=row_h, fill=COLOURS["stripe"])
        _el(row, "text", name, class_="row-label", x=left - PAD, y=y + 15, text_anchor="end", fill=COLOURS["text"])
        if skipped:
            band = _el(row, "rect", class_="skipped", x=left, y=y + 3, width=CHART_W, height=ROW_H - 6,
                       fill="url(#hatch-skipped)")  # fmt: skip
            _el(band, "title", f"{name}: {_status(report, name)[1]}")
        for lane, lane_entries in enumerate(lanes[name]):
            for entry in lane_entries:
                _bar(row, entry, x_of, y + ROW_H * lane, position.get(id(entry)))
        short, full = _status(report, name)
        failed = result is not None and result.state is State.FAILED
        status = _el(row, "text", short, class_="status", x=left + CHART_W + PAD, y=y + 15,
                     fill=COLOURS["failed"] if failed else COLOURS["muted"])  # fmt: skip
        if short != full:
            _el(status, "title", full)

    _critical_legend(svg, critical, end_s, PAD, chart_bottom + 60)
    ET.indent(svg, space="  ")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(svg, encoding="unicode") + "\n"


def _bar(row: ET.Element, entry: TimelineEntry, x_of: Callable[[float], float], y: float, critical: int | None) -> None:
    failed = entry.result != "SUCCEEDED"
    classes = "bar" + (" critical" if critical else "") + (" failed" if failed else "")
    x0, x1 = x_of(entry.start), x_of(entry.end)
    width = max(2.0, x1 - x0)  # an instant operation (create_stack_set) still shows
    fill = "url(#hatch-failed)" if failed else COLOURS["critical"] if critical else COLOURS["bar"]
    bar = _el(row, "rect", class_=classes, x=x0, y=y + (ROW_H - BAR_H) / 2, width=width, height=BAR_H, fill=fill,
              data_operation=entry.operation, data_start=entry.start, data_end=entry.end, data_result=entry.result)
    if critical:
        bar.set("data-critical", str(critical))
        bar.set("stroke", "#000000")
        bar.set("stroke-width", "2.5")
    where = f" (critical path #{critical})" if critical else ""
    _el(bar, "title", f"{entry.stackset}: {entry.operation}{where}\nstart {_minutes(entry.start)}, "
                      f"duration {_minutes(entry.end - entry.start)}, {entry.result}")  # fmt: skip
    if failed:
        _el(row, "text", "\u2717", class_="failed-mark", x=x0 + width + 3, y=y + 16, fill=COLOURS["failed"],
            font_weight="bold")  # fmt: skip
    if critical and width >= 16:
        _el(row, "text", str(critical), class_="critical-number", x=x0 + 4, y=y + 15, font_size="10",
            font_weight="bold", fill="#000000")  # fmt: skip


def _critical_legend(svg: ET.Element, critical: list[TimelineEntry], end_s: float, x: float, y: float) -> None:
    legend = _el(svg, "g", class_="critical-path")
    if not critical:
        _el(legend, "text", "critical path: no operations ran", x=x, y=y, fill=COLOURS["text"])
        return
    span = critical[-1].end - critical[0].start
    _el(legend, "text", f"critical path: {len(critical)} operations, {_minutes(span)} of the run's "
                        f"{_minutes(end_s)} (each waited for the one before it)", x=x, y=y, font_weight="bold",
        fill=COLOURS["text"])  # fmt: skip
    for number, entry in enumerate(critical, start=1):
        _el(legend, "text", f"{number}. {entry.stackset}: {entry.operation}, {_minutes(entry.start)} \u2192 "
                            f"{_minutes(entry.end)} {entry.result}", class_="critical-item", x=x + 12,
            y=y + 18 * number, fill=COLOURS["text"])  # fmt: skip
