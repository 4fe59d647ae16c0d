"""The whole life of an instance, as an operator runs it against the sandbox's model of AWS: first deploy, a failed
create and its retry, destroy and rebuild on the kept data, retiring an instance, and what one instance's trouble
does to the others. Each test is one flow, through `deploy.main` as the README gives the commands."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

import deploy
from stacksets.awsmodel.model import AwsModel
from tests.conftest import ROOT

pytestmark = pytest.mark.slow
SCENARIOS = ROOT / "examples" / "scenarios"
DEV, PROD = "555555555555", "666666666666"


def sandbox(workdir: Path) -> AwsModel:
    """The rehearsal's AWS as the last command left it."""
    return AwsModel.load(workdir / ".rstudio-fargate" / "sandbox" / "aws.pickle")


def stack_of(model: AwsModel, stackset: str) -> Any:
    """The one live stack of a single-account StackSet."""
    (stack,) = [s for stacks in model.world.stacks.by_place.values() for s in stacks
                if s.stackset == stackset and s.status != "DELETE_COMPLETE"]  # fmt: skip
    return stack


def live_stacksets(model: AwsModel) -> dict[str, Any]:
    return {name: s for (_, _, name), s in model.world.stacksets.sets.items()}


def physical_ids(stack: Any, resource_type: str) -> dict[str, str]:
    return {r.logical_id: r.physical_id for r in stack.resources.values() if r.resource_type == resource_type}


def edit_config(workdir: Path, change: Any) -> None:
    """Edit config.yaml as an operator would, then render, as the README says to."""
    data = yaml.safe_load((workdir / "config.yaml").read_text())
    change(data)
    (workdir / "config.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    assert deploy.main(["render"]) == 0


def test_a_failed_first_create_is_retried_by_the_next_deploy_without_already_exists(workdir, capsys):
    scenario = ["--scenario", str(SCENARIOS / "failing-create.yaml")]
    assert deploy.main(["deploy", "--sandbox", "--yes", *scenario]) == 1
    capsys.readouterr()
    assert deploy.main(["deploy", "--sandbox", "--yes", *scenario]) == 0
    out = capsys.readouterr().out
    assert "AlreadyExists" not in out and "ROLLBACK_FAILED" not in out
    balancer = next(r for r in stack_of(sandbox(workdir), "rstudio-dev").resources.values()
                    if r.resource_type == "AWS::ElasticLoadBalancingV2::LoadBalancer")  # fmt: skip
    protection = {a["Key"]: a["Value"] for a in balancer.properties["LoadBalancerAttributes"]}
    assert protection["deletion_protection.enabled"] == "true"  # switched back on once the instance stood


def test_deploy_destroy_deploy_rebuilds_on_the_same_file_system_secrets_and_repositories(workdir, capsys):
    assert deploy.main(["deploy", "--sandbox", "--yes"]) == 0
    before = sandbox(workdir)
    storage = stack_of(before, "rstudio-prod-storage")
    kept = {"file system": physical_ids(storage, "AWS::EFS::FileSystem"),
            "secrets": physical_ids(storage, "AWS::SecretsManager::Secret"),
            "repositories": physical_ids(stack_of(before, "rstudio-central"), "AWS::ECR::Repository")}  # fmt: skip
    capsys.readouterr()

    assert deploy.main(["destroy", "--sandbox", "--yes"]) == 0
    out = capsys.readouterr().out
    assert "Kept (they hold data" in out and "  rstudio-prod-storage\n" in out and "  rstudio-central\n" in out
    gone = sandbox(workdir)
    assert "rstudio-prod" not in live_stacksets(gone) and "rstudio-prod-storage" in live_stacksets(gone)

    assert deploy.main(["deploy", "--sandbox", "--yes"]) == 0
    after = sandbox(workdir)
    storage = stack_of(after, "rstudio-prod-storage")
    assert {"file system": physical_ids(storage, "AWS::EFS::FileSystem"),
            "secrets": physical_ids(storage, "AWS::SecretsManager::Secret"),
            "repositories": physical_ids(stack_of(after, "rstudio-central"), "AWS::ECR::Repository")} == kept
    rebuilt = stack_of(after, "rstudio-prod")
    assert rebuilt.parameters["FileSystemId"] == kept["file system"]["FileSystem"]
    assert rebuilt.parameters["PasswordSecretArns"].split(",")[0] == kept["secrets"]["AlicePassword"]


def test_destroy_data_removes_every_stackset_and_names_what_their_stacks_retain(workdir, capsys):
    assert deploy.main(["deploy", "--sandbox", "--yes"]) == 0
    capsys.readouterr()
    assert deploy.main(["destroy", "--sandbox", "--yes", "--data"]) == 0
    out = capsys.readouterr().out
    assert "rstudio-prod-storage: FileSystem (AWS::EFS::FileSystem)" in out
    assert not live_stacksets(sandbox(workdir))


def test_destroy_only_an_instance_touches_only_its_stacksets(workdir, capsys):
    assert deploy.main(["deploy", "--sandbox", "--yes"]) == 0
    before = {name: len(s.operations) for name, s in live_stacksets(sandbox(workdir)).items()}
    assert deploy.main(["destroy", "--sandbox", "--yes", "--only", "rstudio-dev"]) == 0
    after = {name: len(s.operations) for name, s in live_stacksets(sandbox(workdir)).items()}
    assert set(before) - set(after) == {"rstudio-dev"}
    assert after == {name: count for name, count in before.items() if name != "rstudio-dev"}  # nothing else ran


def test_destroy_of_an_instance_on_ec2_lifts_the_scale_in_protection_its_group_would_wait_on(workdir, capsys):
    assert deploy.main(["deploy", "--sandbox", "--yes"]) == 0
    deployed = sandbox(workdir)
    (group,) = physical_ids(stack_of(deployed, "rstudio-prod"), "AWS::AutoScaling::AutoScalingGroup").values()
    instances = deployed.world.engine.registry.instances[(PROD, "eu-west-1", group)]
    # prod runs its three per-user RStudio servers on EC2: one instance each, protected by ECS
    assert len(instances) == 3 and all(i.protected for i in instances)
    capsys.readouterr()

    assert deploy.main(["destroy", "--sandbox", "--yes", "--only", "rstudio-prod"]) == 0
    gone = sandbox(workdir)
    assert "rstudio-prod" not in live_stacksets(gone)
    assert (PROD, "eu-west-1", group) not in gone.world.engine.registry.instances  # terminated with the group
    (deleted,) = [s for s in gone.world.stacks.by_place[(PROD, "eu-west-1")] if s.stackset == "rstudio-prod"]
    steps = [(e.logical_id, e.resource_type, e.status) for e in deleted.events]
    first_deletion = next(n for n, (_, _, status) in enumerate(steps) if status.startswith("DELETE"))
    order = [(lid, kind) for lid, kind, status in steps[first_deletion:] if status == "DELETE_COMPLETE"]
    position = {kind if kind.startswith("Custom::") else lid: n for n, (lid, kind) in enumerate(order)}
    # the services stop before the protection is lifted, and it is lifted before the group goes
    services = [n for n, (lid, _) in enumerate(order) if lid.endswith("RStudioService")]
    assert len(services) == 3 and max(services) < position["Custom::AsgRelease"] < position["ContainerInstanceGroup"]


def test_retiring_an_instance_deletes_its_compute_keeps_its_data_and_leaves_the_rest_alone(workdir, capsys):
    assert deploy.main(["deploy", "--sandbox", "--yes"]) == 0
    before = {name: (len(s.operations), s.body) for name, s in live_stacksets(sandbox(workdir)).items()}
    edit_config(workdir, lambda data: data["instances"].pop("dev"))
    capsys.readouterr()

    assert deploy.main(["plan", "--sandbox"]) == 0
    out = capsys.readouterr().out
    assert "compute, deploy --prune deletes them: rstudio-dev, rstudio-dev-delegation" in out
    assert "rstudio-dev-data, rstudio-dev-storage, rstudio-dev-zone" in out
    assert deploy.main(["deploy", "--sandbox", "--yes"]) == 0  # without --prune: nothing of dev is deleted
    assert {"rstudio-dev", "rstudio-dev-delegation"} <= set(live_stacksets(sandbox(workdir)))

    assert deploy.main(["deploy", "--sandbox", "--yes", "--prune"]) == 0
    after = {name: (len(s.operations), s.body) for name, s in live_stacksets(sandbox(workdir)).items()}
    assert set(before) - set(after) == {"rstudio-dev", "rstudio-dev-delegation"}
    # the account's logs policy goes with its last instance there; nothing else changed at all
    changed = {name for name in after if after[name] != before[name]}
    assert changed == {"rstudio-logs"}
    assert [i.account for i in live_stacksets(sandbox(workdir))["rstudio-logs"].instances.values()] == [PROD]


def test_one_instances_failing_zone_leaves_the_other_instances_deployed(workdir, capsys):
    failing = workdir / "failing-zone.yaml"
    failing.write_text(f'faults:\n  - {{stackset: rstudio-dev-zone, account: "{DEV}", resource: HostedZone, '
                       'times: 1, reason: "Rate exceeded while creating the hosted zone"}\n')  # fmt: skip
    assert deploy.main(["deploy", "--sandbox", "--yes", "--scenario", str(failing)]) == 1
    out = capsys.readouterr().out
    summary = out[out.index("StackSet                     result"):]
    assert "rstudio-dev-zone             FAILED" in summary
    assert "rstudio-dev                  SKIPPED" in summary
    for name in ("rstudio-prod", "rstudio-prod-delegation", "rstudio-prod-storage"):
        assert f"{name:28} SUCCEEDED" in summary, name


def ten_instances_in_one_account(data: dict[str, Any]) -> None:
    template = data["instances"]["dev"]
    data["instances"] = {f"team{n}": {**template, "account": DEV, "network": {**template["network"],
                                                                              "vpc_cidr": f"10.{20 + n}.0.0/20"}}
                         for n in range(10)}  # fmt: skip
    for number, instance in enumerate(data["instances"].values()):
        instance["users"] = {user: {**settings, "uid": settings["uid"] + 100 * number}
                             for user, settings in instance["users"].items()}  # fmt: skip


def test_ten_instances_in_one_account_and_region_deploy_once_its_vpc_quotas_are_raised(workdir, capsys):
    edit_config(workdir, ten_instances_in_one_account)
    capsys.readouterr()
    assert deploy.main(["plan", "--sandbox", "--sandbox-state", "none"]) == 0
    out = capsys.readouterr().out
    # AWS's defaults would stop the fifth VPC and the sixth NAT address: the plan says so before anything is built
    assert f"quota: account {DEV} in eu-west-1 needs 11 of 'VPCs per Region' (default 5" in out
    assert f"quota: account {DEV} in eu-west-1 needs 10 of 'EC2-VPC Elastic IPs' (default 5)" in out
    assert deploy.main(["deploy", "--sandbox", "--sandbox-state", "none", "--yes"]) == 1
    assert "Error Code: VpcLimitExceeded" in capsys.readouterr().out
    raised = workdir / "raised.yaml"
    raised.write_text(f'quotas:\n  "{DEV}": {{vpcs_per_region: 20, elastic_ips_per_region: 20}}\n')
    assert deploy.main(["deploy", "--sandbox", "--yes", "--scenario", str(raised)]) == 0
    model = sandbox(workdir)
    policies = [r for _, r in model.world.engine.registry.resources(DEV, "eu-west-1")
                if r.resource_type == "AWS::Logs::ResourcePolicy"]  # fmt: skip
    assert len(policies) == 1  # the one of rstudio-logs, however many instances the account runs


def test_an_instance_account_with_a_lambda_concurrency_quota_of_10_deploys(workdir, capsys):
    """A freshly vended account may start with 10 concurrent Lambda executions, and Lambda keeps min(100, quota) of
    them unreserved (rule lambda-concurrency): a function that reserves any concurrency fails the instance there."""
    fresh = workdir / "fresh.yaml"
    fresh.write_text(f'quotas:\n  "{DEV}": {{lambda_concurrent_executions: 10}}\n'
                     f'  "{PROD}": {{lambda_concurrent_executions: 10}}\n')  # fmt: skip
    assert deploy.main(["deploy", "--sandbox", "--yes", "--scenario", str(fresh)]) == 0
