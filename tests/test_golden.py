"""templates/ is the golden set: what is committed is exactly what the generator writes, and it all lints clean."""

from __future__ import annotations

import pytest

from generator.render import EXAMPLES_CI, compare, render_all
from stacksets.naming import all_stackset_names, template_file
from stacksets.template_checks import check_template, lint_template
from tests.conftest import TEMPLATES

COMMITTED = sorted(TEMPLATES.glob("*.yaml"))


def test_committed_templates_equal_the_render(cfg):
    staleness = compare(TEMPLATES, render_all(cfg).templates)
    assert staleness.clean, "templates/ is stale; run `python deploy.py render`\n" + staleness.describe()


def test_the_committed_ci_roles_template_equals_the_render(cfg):
    staleness = compare(EXAMPLES_CI, render_all(cfg).examples, shared=True)
    assert staleness.clean, "examples/ci/ is stale; run `python deploy.py render`\n" + staleness.describe()


def test_registry_config_and_files_agree_one_to_one(cfg):
    expected = sorted(template_file(name) for name in all_stackset_names(sorted(cfg.instances)))
    assert sorted(render_all(cfg).templates) == expected
    assert [path.name for path in COMMITTED] == expected


@pytest.mark.parametrize("path", COMMITTED, ids=[path.name for path in COMMITTED])
def test_committed_template_passes_cfn_lint_and_house_rules(path, cfg):
    text = path.read_text(encoding="utf-8")
    findings = check_template(path.name, text) + lint_template(path.name, text, cfg.regions)
    assert not findings, "\n".join(map(str, findings))
