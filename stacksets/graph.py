"""The StackSet DAG (with the image step) as text for humans and renderers: Mermaid (renders in GitHub PRs) or DOT."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from stacksets.plan import ImageStep, Plan


def _id(name: str) -> str:
    return name.replace("-", "_")


def _where(plan: Plan, name: str) -> tuple[str, str]:
    """(targets, regions) of a StackSet, or (images, account/region) of the image step, for its label."""
    step = plan.step(name)
    if isinstance(step, ImageStep):
        return ", ".join(build.image for build in step.images), f"{step.account} / {step.region}"
    targets = step.targets
    return ", ".join(targets.accounts) or ", ".join(targets.organizational_units), ", ".join(targets.regions)


def _edges(plan: Plan) -> list[tuple[str, str]]:
    steps = plan.steps()
    return [(dependency, name) for name in plan.order() for dependency in steps[name].depends_on if dependency in steps]


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
