"""End to end in the sandbox: the real executor deploys every committed template across the organization, with the
image step (simulated builds) between rstudio-central and the instances."""

from __future__ import annotations

from pathlib import Path

import pytest

from stacksets.aws import Clients
from stacksets.builders import Simulated
from stacksets.executor import Executor, Options, State
from stacksets.plan import build_plan
from tests.conftest import TEMPLATES

pytestmark = pytest.mark.slow
sandbox_module = pytest.importorskip("stacksets.sandbox")


@pytest.fixture(scope="module")
def rollout(cfg, tmp_path_factory):
    with sandbox_module.Sandbox(region=cfg.default_region) as sandbox:
        sandbox.reset()  # moto's backends live as long as the process; other test modules may have used them
        id_map = sandbox.setup_organization(cfg)
        plan = sandbox_module.remap_plan(build_plan(cfg, TEMPLATES), id_map)
        clients = Clients(cfg.default_region, endpoint_url=sandbox.endpoint_url)
        state = Path(tmp_path_factory.mktemp("state")) / "state.json"
        executor = Executor(clients, options=Options(poll_s=0.01, state_path=state), builder=Simulated())
        first = executor.deploy(plan)
        yield sandbox, id_map, plan, executor, first


def test_first_deploy_creates_every_stackset_and_instance(rollout):
    _, _, plan, executor, first = rollout
    assert first.ok, first.results
    states = {name: result.state for name, result in first.results.items()}
    assert states == dict.fromkeys(plan.steps(), State.SUCCEEDED)
    rows = executor.status(plan)
    instances = [row for row in rows if row.account and row.stackset != "rstudio-images"]
    assert instances and all(row.detailed_status == "SUCCEEDED" for row in instances)
    assert [(row.detailed_status, row.status) for row in rows if row.stackset == "rstudio-images"] == [
        ("rstudio", "PRESENT"), ("shiny", "PRESENT"), ("bastion", "PRESENT")]  # fmt: skip


def test_images_are_in_the_central_ecr_before_the_instances_start(rollout, cfg):
    sandbox, id_map, plan, _, first = rollout
    ecr = sandbox.client("ecr", account=id_map.account(cfg.accounts.central))
    for build in plan.images.images:
        [image] = ecr.describe_images(repositoryName=build.image, imageIds=[{"imageTag": build.tag}])["imageDetails"]
        assert build.tag in image["imageTags"]
    s3 = sandbox.client("s3", account=id_map.account(cfg.accounts.central))
    rstudio = plan.images.images[0]
    assert s3.get_object(Bucket=plan.images.bucket, Key=rstudio.key)["Body"].read() == rstudio.archive()
    built = [entry for entry in first.timeline if entry.operation.startswith("build ")]
    instances = [entry for entry in first.timeline if entry.stackset in ("rstudio-dev", "rstudio-prod")]
    assert len(built) == 3 and max(entry.end for entry in built) <= min(entry.start for entry in instances)


def test_network_delegation_carries_the_zone_name_servers(rollout, cfg):
    sandbox, id_map, _, _, _ = rollout
    network = sandbox.client("route53", account=id_map.account(cfg.accounts.network))
    records = network.list_resource_record_sets(HostedZoneId=cfg.dns.base_zone_id)["ResourceRecordSets"]
    for instance in cfg.instances:
        account = id_map.account(cfg.instances[instance].account)
        zone_stacks = sandbox.client("cloudformation", account=account).describe_stacks()["Stacks"]
        [zone] = [s for s in zone_stacks if s["StackName"].startswith(f"StackSet-rstudio-{instance}-zone-")]
        name_servers = {o["OutputKey"]: o["OutputValue"] for o in zone["Outputs"]}["NameServers"].split(",")
        [delegation] = [r for r in records if r["Type"] == "NS" and r["Name"].rstrip(".") ==
                        f"{instance}.{cfg.dns.subdomain}.{cfg.dns.base_domain}"]  # fmt: skip
        assert sorted(r["Value"] for r in delegation["ResourceRecords"]) == sorted(name_servers)
        assert len(name_servers) == 4


def test_second_deploy_changes_nothing_and_makes_no_write_call(rollout):
    _, _, plan, executor, _ = rollout
    assert not any(diff.changed for diff in executor.diff(plan))
    second = executor.deploy(plan)
    assert second.ok and sum(second.calls.values()) == 0, second.calls
    assert {result.state for result in second.results.values()} == {State.UNCHANGED}


def test_destroy_removes_every_stackset_and_names_retained_data(rollout):
    sandbox, _, plan, executor, _ = rollout
    report = executor.destroy(plan)
    assert report.ok, report.results
    retained = {(name, logical_id) for name, result in report.results.items() for _, logical_id in result.retained}
    assert ("rstudio-prod-data", "ProdUploadBucket") in retained
    summaries = sandbox.client("cloudformation").list_stack_sets()["Summaries"]
    assert {summary["Status"] for summary in summaries} == {"DELETED"}
    assert len(summaries) == len(plan.nodes)
