"""The StackSet DAG as text for humans and renderers: Mermaid (renders in GitHub PRs) or Graphviz DOT."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from stacksets.plan import Plan


def _id(name: str) -> str:
    return name.replace("-", "_")


def mermaid(plan: Plan) -> str:
    lines = ["graph LR"]
    for name in plan.order():
        node = plan.nodes[name]
        where = ", ".join(node.targets.accounts) or ", ".join(node.targets.organizational_units)
        lines.append(f'  {_id(name)}["{name}<br/>{where} / {", ".join(node.targets.regions)}"]')
    for name in plan.order():
        for dependency in plan.nodes[name].depends_on:
            lines.append(f"  {_id(dependency)} --> {_id(name)}")
    return "\n".join(lines) + "\n"


def dot(plan: Plan) -> str:
    lines = ["digraph stacksets {", "  rankdir=LR;", '  node [shape=box, fontname="Helvetica"];']
    for name in plan.order():
        node = plan.nodes[name]
        where = ", ".join(node.targets.accounts) or ", ".join(node.targets.organizational_units)
        lines.append(f'  "{name}" [label="{name}\\n{where}\\n{", ".join(node.targets.regions)}"];')
    for name in plan.order():
        for dependency in plan.nodes[name].depends_on:
            lines.append(f'  "{dependency}" -> "{name}";')
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
