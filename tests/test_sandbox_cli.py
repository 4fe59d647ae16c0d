"""`deploy.py … --sandbox --scenario FILE` as a platform engineer rehearses a rollout: one organization kept between
commands, faults from the scenario, quotas warned about before anything is written."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import deploy
from tests.conftest import EXAMPLE_CONFIG, ROOT, TEMPLATES

pytestmark = pytest.mark.slow
SCENARIOS = ROOT / "examples" / "scenarios"


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    shutil.copy(EXAMPLE_CONFIG, tmp_path / "config.yaml")
    shutil.copytree(TEMPLATES, tmp_path / "templates")
    shutil.copytree(ROOT / "container", tmp_path / "container")
    return tmp_path


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
