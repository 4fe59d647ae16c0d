from __future__ import annotations

from stacksets.graph import dot, mermaid
from stacksets.plan import build_plan
from tests.conftest import TEMPLATES


def test_mermaid_has_every_node_and_edge(cfg):
    plan = build_plan(cfg, TEMPLATES)
    text = mermaid(plan)
    assert text.startswith("graph LR\n")
    edges = sum(len(step.depends_on) for step in plan.steps().values())
    assert text.count(" --> ") == edges == 24
    assert "rstudio_prod_zone --> rstudio_prod_delegation" in text and "rstudio_dev_zone --> rstudio_prod" not in text
    assert "rstudio_prod_storage --> rstudio_prod" in text and "rstudio_logs --> rstudio_dev" in text
    assert all(name.replace("-", "_") + '["' in text for name in plan.steps())
    # the image step between central and the instances, labelled with its images and where they go
    assert "rstudio_central --> rstudio_images" in text and "rstudio_images --> rstudio_dev" in text
    assert 'rstudio_images["rstudio-images<br/>rstudio, shiny, bastion / 222222222222 / eu-west-1"]' in text


def test_dot_is_stable_and_complete(cfg):
    plan = build_plan(cfg, TEMPLATES)
    assert dot(plan) == dot(build_plan(cfg, TEMPLATES))
    assert '"rstudio-data" -> "rstudio-prod-data";' in dot(plan)
    assert '"rstudio-dev-delegation" -> "rstudio-dev";' in dot(plan)
    assert dot(plan).count(" -> ") == 24


def test_every_edge_is_drawn_once(cfg):
    """Each dependency is one arrow in Mermaid and in DOT, for the whole plan and the narrowed and turned-around
    plans the commands draw or walk."""
    whole = build_plan(cfg, TEMPLATES)
    for plan in (whole, whole.only(["rstudio-prod"]), whole.only(["rstudio-images"]), whole.without_images(),
                 whole.reversed(), whole.with_dependents(["rstudio-bootstrap"])):  # fmt: skip
        wanted = sorted((dep, name) for name, step in plan.steps().items() for dep in set(step.depends_on))
        arrows = [line.strip() for line in mermaid(plan).splitlines() if " --> " in line]
        assert sorted(arrows) == sorted(f"{a.replace('-', '_')} --> {b.replace('-', '_')}" for a, b in wanted)
        lines = [line.strip() for line in dot(plan).splitlines() if " -> " in line]
        assert len(lines) == len(set(lines)) == len(wanted)
