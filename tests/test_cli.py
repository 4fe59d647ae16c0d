"""deploy.py through `main(argv)`: exit codes, messages, and that user mistakes never print a traceback."""

from __future__ import annotations

import argparse
import json
import re
import shutil
from pathlib import Path

import pytest

import deploy
from tests.conftest import EXAMPLE_CONFIG, ROOT, TEMPLATES


def paths(workdir: Path) -> list[str]:
    return ["--config", str(workdir / "config.yaml"), "--templates", str(workdir / "templates")]


def render_paths(workdir: Path) -> list[str]:
    return paths(workdir) + ["--container", str(workdir / "container")]


def run(*argv: str) -> int:
    return deploy.main(list(argv))


COMMANDS = ["render", "validate", "schema", "plan", "deploy", "status", "drift", "destroy", "graph", "preflight",
            "images", "cost"]  # fmt: skip


@pytest.mark.parametrize("command", [[]] + [[name] for name in COMMANDS])
def test_help_on_every_command(command, capsys):
    assert run(*command, "--help") == 0
    assert "--config" in capsys.readouterr().out or command == []


def test_unknown_command_is_a_usage_error(capsys):
    assert run("launch") == 2
    assert "invalid choice" in capsys.readouterr().err


def test_render_check_passes_on_the_committed_templates(workdir, capsys):
    assert run("render", "--check", *render_paths(workdir)) == 0
    assert "are current" in capsys.readouterr().out


def test_render_check_fails_with_a_diff_when_stale(workdir, capsys):
    stale = workdir / "templates" / "rstudio-prod-delegation.yaml"
    stale.write_text(stale.read_text().replace("TTL", "Ttl"))
    (workdir / "templates" / "rstudio-gone.yaml").write_text("orphan\n")
    assert run("render", "--check", *render_paths(workdir)) == 1
    out = capsys.readouterr().out
    assert "+++ templates/rstudio-prod-delegation.yaml (rendered)" in out
    assert "orphan: templates/rstudio-gone.yaml" in out


def test_render_writes_and_removes_orphans(workdir, capsys):
    (workdir / "templates" / "rstudio-gone.yaml").write_text("orphan\n")
    (workdir / "templates" / "rstudio-dev.yaml").unlink()
    assert run("render", *render_paths(workdir)) == 0
    out = capsys.readouterr().out
    assert "wrote   " in out and "rstudio-dev.yaml" in out and "removed " in out
    assert not (workdir / "templates" / "rstudio-gone.yaml").exists()
    assert (workdir / "templates" / "rstudio-dev.yaml").read_bytes() == (TEMPLATES / "rstudio-dev.yaml").read_bytes()


def test_bad_config_exits_2_naming_the_key_and_writes_nothing(workdir, capsys):
    config = workdir / "config.yaml"
    config.write_text(config.read_text().replace("cpu: 2048", "cpu: 2000"))
    before = {p.name: p.read_bytes() for p in (workdir / "templates").iterdir()}
    assert run("render", "--config", str(config), "--templates", str(workdir / "templates")) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "instances.dev.rstudio" in err and "cpu 2000" in err
    assert "Traceback" not in err
    assert {p.name: p.read_bytes() for p in (workdir / "templates").iterdir()} == before


def test_missing_config_file_exits_2(tmp_path, capsys):
    assert run("validate", "--config", str(tmp_path / "missing.yaml")) == 2
    assert "no such file" in capsys.readouterr().err


def test_validate_accepts_the_committed_templates(workdir, capsys):
    assert run("validate", *paths(workdir)) == 0
    assert "0 problem(s)" in capsys.readouterr().out


def test_validate_reports_a_broken_template(workdir, capsys):
    path = workdir / "templates" / "rstudio-central.yaml"
    path.write_text(path.read_text().replace("DeletionPolicy: Retain", "DeletionPolicy: Delete", 1))
    (workdir / "templates" / "rstudio-data.yaml").unlink()
    assert run("validate", *paths(workdir)) == 1
    out = capsys.readouterr().out
    assert "rstudio-central.yaml" in out and "[retain]" in out
    assert "rstudio-data.yaml: missing" in out


def test_schema_file_is_current(capsys):
    assert run("schema", "--check", "--output", str(ROOT / "config.schema.json")) == 0


def test_schema_check_fails_when_stale(tmp_path, capsys):
    stale = tmp_path / "schema.json"
    stale.write_text("{}\n")
    assert run("schema", "--check", "--output", str(stale)) == 1
    assert run("schema", "--output", str(stale)) == 0
    assert run("schema", "--check", "--output", str(stale)) == 0


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    [install_and_test] = [line for line in readme.splitlines() if line.endswith("-m pytest")]
    assert install_and_test.startswith("python3 -m venv .venv && .venv/bin/pip install -e '.[dev,sandbox]'")
    assert "pip\" install --quiet -e '.[dev,sandbox]'" in ci
    assert '"$venv/bin/python" -m pytest\n' in ci


def test_graph_prints_mermaid(capsys):
    assert run("graph", "--config", str(EXAMPLE_CONFIG), "--templates", str(TEMPLATES)) == 0
    assert capsys.readouterr().out.startswith("graph LR")


def test_deploy_refuses_to_run_unconfirmed_without_a_terminal(workdir, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    assert run("destroy", "--sandbox", *paths(workdir)) == 2
    assert "pass --yes" in capsys.readouterr().err


def test_sandbox_plan_then_deploy_end_to_end(workdir, capsys):
    assert run("plan", "--sandbox", "--json", *paths(workdir)) == 0
    planned = json.loads(capsys.readouterr().out)
    assert len(planned["stacksets"]) == 14 and all(item["changed"] for item in planned["stacksets"])
    assert [image for image, _ in planned["images"]["missing"]] == ["rstudio", "shiny", "bastion"]
    assert "rstudio-images" in planned["waves"][2]
    assert run("deploy", "--sandbox", "--yes", "--timeline", str(workdir / "timeline.json"), *paths(workdir)) == 0
    out = capsys.readouterr().out
    assert "14 of 14 StackSets change, 3 image(s) to build" in out and "\nok in " in out
    assert "  ~ rstudio-images: build rstudio ctx-" in out
    assert "rstudio-images               SUCCEEDED  built rstudio, shiny, bastion" in out
    assert "sandbox re-run of the same plan: 0 create/update/delete call(s)" in out
    assert out.count("CURRENT") >= 14  # the final status table: every instance current
    assert json.loads((workdir / "timeline.json").read_text())["operations"]


def test_preflight_names_unverified_ses_identities_in_the_sandbox(workdir, capsys):
    unverified = ["--scenario", str(ROOT / "examples" / "scenarios" / "unverified-email.yaml")]
    assert run("preflight", "--sandbox", *unverified, *paths(workdir)) == 1
    assert "cannot assume arn:aws:iam::666666666666:role/rstudio-deploy-reader" in capsys.readouterr().out
    assert run("deploy", "--sandbox", "--yes", "--only", "rstudio-bootstrap", *unverified, *paths(workdir)) == 0
    capsys.readouterr()
    assert run("preflight", "--sandbox", *unverified, *paths(workdir)) == 1
    out = capsys.readouterr().out
    assert "chen.wei@example.com (instances.prod.users.chen.email) is not a verified SES identity" in out
    assert "preflight: 1 problem(s)" in out


def test_render_check_names_a_stale_image_configuration_file(workdir, capsys):
    stale = workdir / "container" / "rstudio" / "config" / "rsession.conf"
    stale.write_text(stale.read_text().replace("session-timeout-minutes=120", "session-timeout-minutes=5"))
    assert run("render", "--check", *render_paths(workdir)) == 1
    out = capsys.readouterr().out
    assert "+++ container/rstudio/config/rsession.conf (rendered)" in out
    # The tag is hashed over what render would write, so the committed templates stay current.
    assert "templates/" not in out
    assert run("render", *render_paths(workdir)) == 0
    assert "session-timeout-minutes=120" in stale.read_text()


def test_render_without_a_build_context_exits_2_and_writes_nothing(workdir, capsys):
    shutil.rmtree(workdir / "container" / "bastion")
    before = {p.name: p.read_bytes() for p in (workdir / "templates").iterdir()}
    assert run("render", *render_paths(workdir)) == 2
    assert "container/bastion/ does not exist" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in (workdir / "templates").iterdir()} == before


def test_images_in_the_sandbox_deploys_central_first_then_builds_every_image(workdir, capsys):
    assert run("images", "--sandbox", "--yes", *paths(workdir)) == 0
    captured = capsys.readouterr()
    assert "~ rstudio-images: build rstudio ctx-" in captured.out
    assert "sandbox: deploying rstudio-bootstrap, rstudio-central first, where the builds run" in captured.err
    # per image: tag, outcome, duration
    lines = re.findall(r"^    (\w+) +(ctx-[0-9a-f]{20}) +(\w+) +[0-9.]+ s ", captured.out, flags=re.MULTILINE)
    assert [(image, outcome) for image, _, outcome in lines] == [
        ("rstudio", "built"), ("shiny", "built"), ("bastion", "built")]  # fmt: skip
    assert "\nok in " in captured.out


def test_images_only_an_unknown_image_exits_2(workdir, capsys):
    assert run("images", "--only", "rstudio,bogus", *paths(workdir)) == 2
    err = capsys.readouterr().err
    assert err == "error: unknown image(s) bogus; the images are rstudio, shiny, bastion\n"


def test_images_local_without_docker_exits_2(workdir, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(workdir))
    assert run("images", "--local", "--yes", *paths(workdir)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: `docker` is not on PATH") and "Traceback" not in err


def test_images_local_cannot_push_to_the_sandbox(workdir, capsys):
    assert run("images", "--local", "--sandbox", *paths(workdir)) == 2
    assert "leave out --local or --sandbox" in capsys.readouterr().err


def test_a_context_changed_after_render_stops_the_plan(workdir, capsys):
    start = workdir / "container" / "bastion" / "start.sh"
    start.write_text(start.read_text() + "# edited after render\n")
    assert run("plan", "--sandbox", *paths(workdir), "--container", str(workdir / "container")) == 2
    err = capsys.readouterr().err
    assert "container/bastion/ does not match the image tag in " in err and "rstudio-prod.yaml" in err
    assert err.rstrip().endswith("run `python deploy.py render` and commit")


def test_destroy_only_names_the_stacksets_it_would_remove_and_nothing_they_stand_on(workdir, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    assert run("destroy", "--sandbox", "--only", "rstudio-dev", *paths(workdir)) == 2
    assert "error: destroy rstudio-dev needs confirmation" in capsys.readouterr().err
    # named with compute, a zone is kept: only what stands on it goes, and the question says what stays
    assert run("destroy", "--sandbox", "--only", "rstudio-dev-delegation", "rstudio-dev-zone", *paths(workdir)) == 2
    assert "error: destroy rstudio-dev, rstudio-dev-delegation (keeping rstudio-dev-zone) needs confirmation" in \
        capsys.readouterr().err


def test_destroy_only_of_stacksets_that_hold_data_needs_data(workdir, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    assert run("destroy", "--sandbox", "--only", "rstudio-dev-storage", *paths(workdir)) == 2
    err = capsys.readouterr().err
    assert "error: rstudio-dev-storage hold(s) data: destroy keeps them unless you pass --data" in err
    assert "confirmation" not in err
    assert run("destroy", "--sandbox", "--data", "--only", "rstudio-dev-storage", *paths(workdir)) == 2
    assert "error: destroy rstudio-dev, rstudio-dev-storage INCLUDING THEIR DATA needs confirmation" in \
        capsys.readouterr().err


def commands_table(readme: str) -> list[list[str]]:
    """The rows of the README's commands table, which must be one table: a blank line inside would end it there,
    and what follows would render as text."""
    section = readme.split("\n## Commands\n", 1)[1].split("\n## ", 1)[0]
    lines = section.splitlines()
    rows = [i for i, line in enumerate(lines) if line.startswith("|")]
    assert rows and rows == list(range(rows[0], rows[0] + len(rows))), "the commands table is split"
    assert lines[rows[0] + 1].startswith("|---")
    return [[cell.strip() for cell in lines[i].strip("|").split(" | ")] for i in rows[2:]]


def test_the_readme_lists_every_command_in_one_table():
    parser = deploy.build_parser()
    [subcommands] = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
    rows = commands_table((ROOT / "README.md").read_text(encoding="utf-8"))
    listed = {name for row in rows for name in re.findall(r"`(?:python deploy\.py )?([a-z]+)", row[0])}
    assert listed == set(subcommands.choices)
    split = (ROOT / "README.md").read_text(encoding="utf-8").replace("| `python deploy.py schema`", "\n| `schema`")
    with pytest.raises(AssertionError, match="split"):
        commands_table(split)
