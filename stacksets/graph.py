"""The StackSet DAG as text for humans and renderers: Mermaid (renders in GitHub PRs) or Graphviz DOT."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from stacksets.plan import Plan


def _id(name: str) -> str:
    return name.replace("-", "_")


def _where(plan: Plan, name: str) -> tuple[str, str]:
    """(targets, regions) of a StackSet, for its label."""
    targets = plan.nodes[name].targets
    return ", ".join(targets.accounts) or ", ".join(targets.organizational_units), ", ".join(targets.regions)


def _edges(plan: Plan) -> list[tuple[str, str]]:
    return [(dependency, name) for name in plan.order() for dependency in plan.nodes[name].depends_on]


def mermaid(plan: Plan) -> str:
    lines = ["graph LR"]
    lines += [f'  {_id(name)}["{name}<br/>{" / ".join(_where(plan, name))}"]' for name in plan.order()]
    lines += [f"  {_id(source)} --> {_id(target)}" for source, target in _edges(plan)]
    return "\n".join(lines) + "\n"


def dot(plan: Plan) -> str:
    lines = ["digraph stacksets {", "  rankdir=LR;", '  node [shape=box, fontname="Helvetica"];']
    newline = "\\n"  # DOT's line break inside a label
    lines += [f'  "{name}" [label="{newline.join((name, *_where(plan, name)))}"];' for name in plan.order()]
    lines += [f'  "{source}" -> "{target}";' for source, target in _edges(plan)]
    lines.append("}")
    return "\n".join(lines) + "\n"


def render_image(dot_text: str, output: Path) -> bool:
    """Write an SVG or PNG (by suffix) with Graphviz when `dot` is installed; False when it is not."""
    executable = shutil.which("dot")
    if executable is None:
        return False
    fmt = output.suffix.lstrip(".") or "svg"
    subprocess.run([executable, f"-T{fmt}", "-o", str(output)], input=dot_text, text=True, check=True)
    return True
