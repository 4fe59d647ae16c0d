"""`deploy.py … --sandbox --scenario FILE` as a platform engineer rehearses a rollout: one organization kept between
commands, faults from the scenario, quotas warned about before anything is written."""

from __future__ import annotations

import json
import re

import pytest

import deploy
from stacksets.awsmodel.model import AwsModel
from stacksets.plan import build_plan
from tests.awsmodel_helpers import SimClock, executor_for, model_for, scenario
from tests.conftest import ROOT, TEMPLATES

pytestmark = pytest.mark.slow
SCENARIOS = ROOT / "examples" / "scenarios"
PROD = "666666666666"


def test_the_acceptance_rehearsal_deploys_and_says_what_it_skipped(workdir, capsys):
    scenario = ["--scenario", str(SCENARIOS / "slow-and-throttled.yaml")]
    assert deploy.main(["deploy", "--sandbox", "--yes", *scenario]) == 0
    out, err = capsys.readouterr()
    assert "account 777777777777 in ou-ab12-11111111 is SUSPENDED: StackSets skips it" in out
    assert "account 999999999999 in ou-ab12-22222222 is the organization's management account" in out
    assert "sandbox re-run of the same plan: 0 create/update/delete call(s)" in out
    assert "sandbox: new rehearsal AWS" in err


def test_one_organization_across_deploy_status_drift_destroy(workdir, capsys):
    assert deploy.main(["deploy", "--sandbox", "--yes", "--only", "rstudio-data"]) == 0
    capsys.readouterr()
    assert deploy.main(["status", "--sandbox"]) == 0
    out, err = capsys.readouterr()
    assert "rstudio-data                 444444444444 eu-west-1      CURRENT" in out and "resumed" in err
    assert deploy.main(["drift", "--sandbox", "--only", "rstudio-data"]) == 0
    assert "in sync" in capsys.readouterr().out
    assert deploy.main(["destroy", "--sandbox", "--yes", "--only", "rstudio-data", "--data"]) == 0
    capsys.readouterr()
    assert deploy.main(["plan", "--sandbox", "--only", "rstudio-data"]) == 0
    assert "rstudio-data: create StackSet" in capsys.readouterr().out


def test_plan_warns_before_a_default_quota_is_crossed_and_aws_refuses_past_it(workdir, capsys):
    low = workdir / "low-quota.yaml"
    low.write_text("limits: {stack_sets_per_administrator: 8}\n")
    assert deploy.main(["plan", "--sandbox", "--scenario", str(low)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("quota: StackSets in the administrator account: 14 exceeds the quota 'Stack sets per "
                          "administrator account' (8); request an increase")  # fmt: skip
    assert deploy.main(["deploy", "--sandbox", "--yes", "--scenario", str(low)]) == 1
    assert "LimitExceededException" in capsys.readouterr().out


def test_an_unverified_welcome_mail_recipient_is_named_and_the_instance_deploys(workdir, capsys):
    scenario = ["--scenario", str(SCENARIOS / "unverified-email.yaml")]
    assert deploy.main(["deploy", "--sandbox", "--yes", *scenario]) == 0
    out = capsys.readouterr().out
    assert "welcome e-mail not sent in 666666666666/eu-west-1 (the instance is deployed without it):" in out
    assert "  chen <chen.wei@example.com>: MessageRejected: Email address is not verified." in out
    resend = re.search(r"aws lambda invoke --region eu-west-1 --function-name (\S+) .*--cli-read-timeout 150 "
                       r"--payload '\{\"resend\": \[\"chen\"\]\}' /dev/stdout", out)  # fmt: skip
    assert resend and "WelcomeEmailFunction" in resend[1]
    assert "rstudio-prod                 SUCCEEDED" in out


@pytest.fixture
def bootstrapped(cfg, workdir, monkeypatch) -> AwsModel:
    """A rehearsal AWS in which only rstudio-bootstrap is deployed (so the reader roles exist) and the welcome
    e-mail's sender is not verified; every --sandbox command of the test runs on it, so its call log counts writes."""
    model = model_for(cfg, scenario(ses={PROD: {"verified": ["alice@example.com", "bob@example.com",
                                                             "chen.wei@example.com"]}}), clock=SimClock())  # fmt: skip
    assert executor_for(model, cfg, workdir).deploy(build_plan(cfg, TEMPLATES).only(["rstudio-bootstrap"])).ok
    monkeypatch.setattr(AwsModel, "for_config", lambda *args, **kwargs: model)
    return model


def test_deploy_stops_before_the_first_write_when_the_preflight_finds_an_unverified_sender(bootstrapped, capsys):
    writes = bootstrapped.mutating_calls()
    assert deploy.main(["deploy", "--sandbox", "--sandbox-state", "none", "--yes"]) == 2
    err = capsys.readouterr().err
    assert bootstrapped.mutating_calls() == writes
    assert (
        "\nerror: preflight found 1 problem(s), so nothing was deployed:\n  - rstudio-admin@example.com "
        "(instances.prod.welcome_email.sender) is not a verified SES identity in account 666666666666 "
        "(eu-west-1): the sender must be verified" in err
    )
    assert "The instances would deploy without these welcome e-mails" in err and "--ignore-preflight" in err


def test_ignore_preflight_deploys_and_names_every_mail_the_sender_could_not_send(bootstrapped, capsys):
    assert deploy.main(["deploy", "--sandbox", "--sandbox-state", "none", "--yes", "--ignore-preflight"]) == 0
    captured = capsys.readouterr()
    assert (
        "warning: --ignore-preflight: rstudio-admin@example.com (instances.prod.welcome_email.sender)" in captured.err
    )
    assert "rstudio-prod                 SUCCEEDED" in captured.out
    for user, address in (("alice", "alice@example.com"), ("bob", "bob@example.com"), ("chen", "chen.wei@example.com")):
        assert f"  {user} <{address}>: MessageRejected: " in captured.out
    assert '--payload \'{"resend": ["alice", "bob", "chen"]}\'' in captured.out


def test_a_first_deploy_notes_what_it_cannot_check_yet_and_goes_on(workdir, capsys):
    """In a new organization the reader roles come with rstudio-bootstrap, which the deploy writes first."""
    assert deploy.main(["deploy", "--sandbox", "--sandbox-state", "none", "--yes", "--only", "rstudio-prod"]) == 0
    err = capsys.readouterr().err
    assert "preflight: cannot check SES in account 666666666666 (eu-west-1): cannot assume " in err
    assert "not checked before the first write: rstudio-bootstrap, which this deploy creates or updates first" in err


def test_a_failed_create_is_reported_and_the_next_deploy_retries_it(workdir, capsys):
    scenario = ["--scenario", str(SCENARIOS / "failing-create.yaml")]
    assert deploy.main(["deploy", "--sandbox", "--yes", *scenario]) == 1
    out = capsys.readouterr().out
    assert "555555555555/eu-west-1: The following resource(s) failed to create: [ShinyService]." in out
    deploy.main(["deploy", "--sandbox", "--yes", *scenario])
    assert "~ rstudio-dev: retry instances 555555555555/eu-west-1" in capsys.readouterr().out


def test_a_scenario_needs_the_sandbox(workdir, capsys):
    assert deploy.main(["plan", "--scenario", str(SCENARIOS / "failing-create.yaml")]) == 2
    assert "--scenario shapes a rehearsal: it needs --sandbox" in capsys.readouterr().err


def test_a_kept_rehearsal_of_another_scenario_is_refused(workdir, capsys):
    assert deploy.main(["plan", "--sandbox"]) == 0
    capsys.readouterr()
    assert deploy.main(["plan", "--sandbox", "--scenario", str(SCENARIOS / "failing-create.yaml")]) == 2
    assert "pass another --sandbox-state, or delete .rstudio-fargate/sandbox" in capsys.readouterr().err


COMPUTE = ["rstudio-dev", "rstudio-dev-delegation", "rstudio-logs", "rstudio-prod", "rstudio-prod-delegation"]
HOLDING_DATA = ["rstudio-central", "rstudio-data", "rstudio-dev-data", "rstudio-dev-storage", "rstudio-dev-zone",
                "rstudio-prod-data", "rstudio-prod-storage", "rstudio-prod-zone"]  # fmt: skip


def deployed_stacksets(status: str) -> dict[str, bool]:
    """Per StackSet of a status table: whether it is deployed."""
    rows = [line.split() for line in status.splitlines() if line.startswith("rstudio-") and " - " in line]
    return {row[0]: "NOT DEPLOYED" not in " ".join(row) for row in rows if row[0] != "rstudio-images"}


def test_destroy_lifts_protection_removes_the_compute_and_names_what_it_keeps(workdir, capsys):
    assert deploy.main(["deploy", "--sandbox", "--yes"]) == 0
    capsys.readouterr()
    assert deploy.main(["destroy", "--sandbox", "--yes"]) == 0
    out, err = capsys.readouterr()
    assert "lifting the load balancer's deletion protection" in err
    # what the deleted compute stacks leave behind (their log groups and ALB logs) is named
    assert "rstudio-prod: AlbLogBucket (AWS::S3::Bucket)" in out and "rstudio-dev: FlowLogGroup" in out
    # the StackSets that hold data, and the bootstrap they stand on, are kept and said to be
    heading = "Kept (they hold data; the next deploy rebuilds the rest on them, `destroy --data` deletes them too):\n"
    assert out.endswith(heading + "".join(f"  {name}\n" for name in sorted(["rstudio-bootstrap", *HOLDING_DATA])))
    assert "FileSystem" not in out and "HostedZone" not in out  # nothing of theirs was deleted
    assert deploy.main(["status", "--sandbox"]) == 0
    deployed = deployed_stacksets(capsys.readouterr().out)
    assert sorted(name for name, up in deployed.items() if not up) == COMPUTE
    assert sorted(name for name, up in deployed.items() if up) == sorted(["rstudio-bootstrap", *HOLDING_DATA])


def test_destroy_data_removes_every_stackset_and_names_what_the_stacks_retain(workdir, capsys):
    assert deploy.main(["deploy", "--sandbox", "--yes"]) == 0
    capsys.readouterr()
    assert deploy.main(["destroy", "--sandbox", "--yes", "--data"]) == 0
    out, err = capsys.readouterr()
    assert "lifting the load balancer's deletion protection" in err
    for retained in ("rstudio-prod-storage: FileSystem (AWS::EFS::FileSystem)", "rstudio-prod-storage: AlicePassword",
                     "rstudio-dev-storage: InstanceKey (AWS::KMS::Key)", "rstudio-dev-zone: HostedZone",
                     "rstudio-central: RstudioRepository (AWS::ECR::Repository)", "rstudio-data: AccessLogBucket",
                     "rstudio-prod-data: ProdUploadBucket", "rstudio-prod: AlbLogBucket"):  # fmt: skip
        assert retained in out, retained
    assert "Kept (" not in out
    assert deploy.main(["status", "--sandbox"]) == 0
    deployed = deployed_stacksets(capsys.readouterr().out)
    assert len(deployed) == 14 and not any(deployed.values())


def test_json_puts_only_event_lines_on_stdout_and_plain_progress_is_timestamped(workdir, capsys):
    assert deploy.main(["deploy", "--sandbox", "--yes", "--json", "--only", "rstudio-data"]) == 0
    out, err = capsys.readouterr()
    events = [json.loads(line) for line in out.splitlines()]  # every line one JSON object, nothing else
    mine = [event for event in events if event["stackset"] == "rstudio-data"]
    states = [event["state"] for event in mine]
    assert states[:2] == ["PENDING", "RUNNING"] and "SUCCEEDED" in states
    assert states[-1] == "UNCHANGED"  # the rehearsal's re-run of the same plan
    assert any(event["instances"] == {"succeeded": 1, "failed": 0, "in_progress": 0, "total": 1} for event in mine)
    assert "rstudio-data" in err and "SUCCEEDED" in err  # the report, for people, on stderr
    # the same command without --json, off a terminal: a timestamped line per change on stderr, the report on stdout
    assert deploy.main(["destroy", "--sandbox", "--yes", "--only", "rstudio-data", "--data"]) == 0
    out, err = capsys.readouterr()
    progress = [line for line in err.splitlines() if re.match(r"\d\d:\d\d:\d\d (rstudio-data|run:) ", line)]
    assert progress[0].split()[1:4] == ["rstudio-data", "RUNNING", "-"] and progress[-1].split()[1] == "run:"
    assert any("delete_stack_instances" in line for line in progress) and "SUCCEEDED" in out
