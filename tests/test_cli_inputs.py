"""Bad input as a new user types it: one clear message naming the profile, file or line, exit code 2, and nothing
written to AWS, because every check runs before the first client exists."""

from __future__ import annotations

from pathlib import Path

import pytest

import deploy
from generator.render import stale_outputs
from stacksets.aws import Clients, ProfileNotConfigured
from stacksets.errors import UserError
from stacksets.plan import PlanError, build_plan

AWS_COMMANDS = ["plan", "deploy", "status", "drift", "destroy", "preflight", "images"]
RERENDER = "run `python deploy.py render` and commit"


@pytest.fixture
def no_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any AWS client, real or sandbox, fails the test: the refusal must come before the first one."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("an AWS client or the sandbox was started before the input was refused")

    monkeypatch.setattr("stacksets.aws.Clients.__init__", refuse)
    monkeypatch.setattr("stacksets.sandbox.Sandbox.__enter__", refuse)


@pytest.fixture
def aws_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An AWS config with two profiles and no credentials file, so no real ~/.aws is read."""
    config = tmp_path / "aws-config"
    config.write_text("[profile alpha]\nregion = eu-west-1\n\n[profile beta]\nregion = eu-west-1\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_DEFAULT_PROFILE", raising=False)
    return config


@pytest.fixture
def no_plan(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reading the templates stops the command with a message of its own: whoever gets that far got past the
    profile check."""

    def reached(*args: object, **kwargs: object) -> None:
        raise PlanError("the plan was built")

    monkeypatch.setattr("stacksets.plan.build_plan", reached)


# --------------------------------------------------------------------------------------------------------------------
# An AWS profile that is not configured


@pytest.mark.parametrize("command", AWS_COMMANDS)
def test_an_unknown_profile_is_the_first_and_only_message(command, workdir, aws_config, no_plan, capsys):
    assert deploy.main([command, "--profile", "no-such-profile"]) == 2
    assert capsys.readouterr().err == (
        f"error: AWS profile 'no-such-profile' is not configured (the profiles in {aws_config} are: alpha, beta); "
        "run `aws configure sso --profile no-such-profile` or pass one of those\n")  # fmt: skip


def test_a_configured_profile_gets_past_the_check(workdir, aws_config, no_plan, capsys):
    assert deploy.main(["plan", "--profile", "beta"]) == 2
    assert capsys.readouterr().err == "error: the plan was built\n"


def test_an_unknown_profile_from_the_environment_says_where_it_came_from(workdir, aws_config, no_plan, monkeypatch,
                                                                        capsys):  # fmt: skip
    monkeypatch.setenv("AWS_PROFILE", "typo")
    assert deploy.main(["status"]) == 2
    assert capsys.readouterr().err.startswith("error: AWS profile 'typo' (from AWS_PROFILE) is not configured (")


def test_an_unknown_profile_without_any_profiles_only_says_how_to_create_one(tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "empty"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    with pytest.raises(ProfileNotConfigured) as raised:
        Clients("eu-west-1", profile="ghost").session()
    assert isinstance(raised.value, UserError)
    assert str(raised.value) == (f"AWS profile 'ghost' is not configured ({tmp_path / 'empty'} defines no profiles); "
                                 "run `aws configure sso --profile ghost`")  # fmt: skip


# --------------------------------------------------------------------------------------------------------------------
# A committed template CloudFormation would refuse


def test_a_template_that_is_not_yaml_stops_deploy_naming_file_and_line(workdir, no_aws, capsys):
    template = workdir / "templates" / "rstudio-dev.yaml"
    lines = template.read_text().splitlines(keepends=True)
    assert lines[8] == "    Description: RStudio task role\n"
    lines[8] = "    Description: RStudio task role: the ALB's\n"  # a colon a hand edit forgot to quote
    template.write_text("".join(lines))
    assert deploy.main(["deploy", "--sandbox", "--yes"]) == 2
    assert capsys.readouterr().err == (
        "error: templates/rstudio-dev.yaml:9: not valid CloudFormation YAML (mapping values are not allowed here); "
        f"{RERENDER}\n")  # fmt: skip


@pytest.mark.parametrize("body", ["AWSTemplateFormatVersion: '2010-09-09'\n", "Resources: []\n", "Resources: {}\n",
                                  "- Resources\n", ""])  # fmt: skip
def test_a_template_without_resources_stops_deploy(body, workdir, no_aws, capsys):
    (workdir / "templates" / "rstudio-prod-delegation.yaml").write_text("# edited by hand\n" + body)
    assert deploy.main(["deploy", "--sandbox", "--yes"]) == 2
    assert capsys.readouterr().err == (
        "error: templates/rstudio-prod-delegation.yaml: not a CloudFormation template: the top level has no "
        f"`Resources` mapping with at least one resource; {RERENDER}\n")  # fmt: skip


def test_a_malformed_short_tag_is_a_plan_error_not_a_traceback(workdir, cfg):
    template = workdir / "templates" / "rstudio-prod-delegation.yaml"
    template.write_text(template.read_text() + "Outputs2:\n  Broken: !GetAtt {Resource: Zone}\n")
    with pytest.raises(PlanError,
                       match=r"rstudio-prod-delegation\.yaml: not valid CloudFormation YAML \(a !GetAtt takes"):
        build_plan(cfg, workdir / "templates", workdir / "container")


# --------------------------------------------------------------------------------------------------------------------
# Committed files that render would not write


def hand_edit(workdir: Path) -> tuple[Path, str]:
    template = workdir / "templates" / "rstudio-prod-delegation.yaml"
    edited = template.read_text() + "# tuned by hand in production\n"
    template.write_text(edited)
    return template, edited


def test_stale_outputs_is_empty_for_a_fresh_checkout_and_names_every_stale_file(workdir, cfg):
    templates, container = workdir / "templates", workdir / "container"
    assert stale_outputs(cfg, templates, container) == []
    hand_edit(workdir)
    (templates / "rstudio-gone.yaml").write_text("orphan\n")
    (templates / "rstudio-dev-zone.yaml").unlink()
    conf = container / "rstudio" / "config" / "rsession.conf"
    conf.write_text(conf.read_text() + "# tuned\n")
    assert [name for staleness in stale_outputs(cfg, templates, container) for name in staleness.files()] == [
        "templates/rstudio-dev-zone.yaml", "templates/rstudio-gone.yaml", "templates/rstudio-prod-delegation.yaml",
        "container/rstudio/config/rsession.conf"]  # fmt: skip


@pytest.mark.parametrize("command", ["deploy", "images"])
def test_a_hand_edited_template_is_refused_before_any_aws_call(command, workdir, no_aws, capsys):
    hand_edit(workdir)
    assert deploy.main([command, "--sandbox", "--yes"]) == 2
    assert capsys.readouterr().err == (
        "error: the committed templates/rstudio-prod-delegation.yaml is not what `python deploy.py render` writes for "
        "config.yaml (edited by hand, or not rendered since the config changed): run `python deploy.py render` and "
        "commit, or pass --allow-stale to deploy the committed files anyway\n")  # fmt: skip


def test_allow_stale_warns_and_deploys_the_committed_bytes(workdir, capsys):
    from stacksets.awsmodel.model import AwsModel
    from stacksets.sandbox import DEFAULT_STATE_DIR, MODEL_FILE

    _, edited = hand_edit(workdir)
    assert deploy.main(["deploy", "--sandbox", "--yes", "--allow-stale"]) == 0
    captured = capsys.readouterr()
    assert ("warning: --allow-stale: deploying the committed templates/rstudio-prod-delegation.yaml although `python "
            "deploy.py render` would change them\n") in captured.err  # fmt: skip
    rehearsal = AwsModel.load(workdir / DEFAULT_STATE_DIR / MODEL_FILE)
    [delegation] = [s for (_, _, name), s in rehearsal.world.stacksets.sets.items()
                    if name == "rstudio-prod-delegation"]  # fmt: skip
    assert delegation.body == edited
    assert "sandbox re-run of the same plan: 0 create/update/delete call(s)" in captured.out
