from __future__ import annotations

from stacksets.graph import dot, mermaid
from stacksets.plan import build_plan
from tests.conftest import TEMPLATES


def test_mermaid_has_every_node_and_edge(cfg):
    plan = build_plan(cfg, TEMPLATES)
    text = mermaid(plan)
    assert text.startswith("graph LR\n")
    edges = sum(len(node.depends_on) for node in plan.nodes.values())
    assert text.count(" --> ") == edges == 16
    assert "rstudio_prod_zone --> rstudio_network" in text
    assert all(name.replace("-", "_") + '["' in text for name in plan.nodes)


def test_dot_is_stable_and_complete(cfg):
    plan = build_plan(cfg, TEMPLATES)
    assert dot(plan) == dot(build_plan(cfg, TEMPLATES))
    assert '"rstudio-data" -> "rstudio-prod-data";' in dot(plan)
    assert dot(plan).count(" -> ") == 16
