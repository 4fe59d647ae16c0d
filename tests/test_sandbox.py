"""The sandbox: every committed template deploys as a SERVICE_MANAGED StackSet into exactly its account of the moto
organization, outputs are readable through the reader role, overrides merge, and deletion cleans up.

The StackSet calls are made with the moto client directly (not through the executor), so these tests pin down what
the shims guarantee. The module shares one sandbox; the last test deletes what the first deployed.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from stacksets import naming
from stacksets.aws import Clients
from stacksets.config import Config
from stacksets.plan import OutputRef, build_plan
from stacksets.sandbox import MANAGEMENT_ACCOUNT, STUBS, IdMap, Sandbox, SandboxError, remap_plan

from .conftest import TEMPLATES

REGION = "eu-west-1"
STAGING_BUCKET = "rstudio-sandbox-staging"

pytestmark = pytest.mark.slow


@dataclass
class Deployed:
    sandbox: Sandbox
    ids: IdMap
    targets: dict[str, str]  # StackSet -> moto account
    name_servers: str  # what the network StackSet got for the dev zone
    seconds: float


def _config_target(cfg: Config, stackset: str) -> str:
    """The config account a StackSet of the committed templates goes to (the bootstrap: to the central account)."""
    fixed = {naming.BOOTSTRAP: cfg.accounts.central, naming.CENTRAL: cfg.accounts.central,
             naming.DATA: cfg.accounts.data, naming.NETWORK: cfg.accounts.network}  # fmt: skip
    for instance_name, instance in cfg.instances.items():
        fixed[naming.zone_stackset(instance_name)] = instance.account
        fixed[naming.instance_stackset(instance_name)] = instance.account
        fixed[naming.instance_data_stackset(instance_name)] = cfg.accounts.data
    return fixed[stackset]


def _instance_stacks(sandbox: Sandbox, account: str, stackset: str) -> list[dict]:
    stacks = sandbox.client("cloudformation", account=account).list_stacks()["StackSummaries"]
    # The uuid matters: a prefix alone would take rstudio-dev-zone's stack for one of rstudio-dev.
    pattern = re.compile(rf"StackSet-{re.escape(stackset)}-[0-9a-f]{{8}}(-[0-9a-f]{{4}}){{3}}-[0-9a-f]{{12}}")
    return [s for s in stacks if pattern.fullmatch(s["StackName"])]


def _deploy(sandbox: Sandbox, ids: IdMap, cfg: Config, stackset: str, parameters: dict[str, str],
            overrides: dict[str, str] | None = None) -> str:  # fmt: skip
    cloudformation = sandbox.client("cloudformation")
    body = (TEMPLATES / naming.template_file(stackset)).read_text(encoding="utf-8")
    if len(body.encode()) > 51_200:  # too large for TemplateBody: through the staging bucket, as the executor does
        key = naming.template_file(stackset)
        sandbox.client("s3").put_object(Bucket=STAGING_BUCKET, Key=key, Body=body.encode())
        source = {"TemplateURL": f"{sandbox.endpoint_url}/{STAGING_BUCKET}/{key}"}
    else:
        source = {"TemplateBody": body}
    values = [{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()]
    cloudformation.create_stack_set(StackSetName=stackset, PermissionModel="SERVICE_MANAGED",
                                    Capabilities=["CAPABILITY_NAMED_IAM"], Parameters=values, **source)  # fmt: skip
    account = ids.account(_config_target(cfg, stackset))
    operation = cloudformation.create_stack_instances(
        StackSetName=stackset, Regions=[REGION],
        DeploymentTargets={"OrganizationalUnitIds": list(ids.organizational_units.values()), "Accounts": [account],
                           "AccountFilterType": "INTERSECTION"},
        ParameterOverrides=[{"ParameterKey": k, "ParameterValue": v} for k, v in (overrides or {}).items()],
    )  # fmt: skip
    status = cloudformation.describe_stack_set_operation(StackSetName=stackset, OperationId=operation["OperationId"])
    results = cloudformation.list_stack_set_operation_results(
        StackSetName=stackset, OperationId=operation["OperationId"]
    )["Summaries"]
    assert status["StackSetOperation"]["Status"] == "SUCCEEDED", (stackset, results)
    return account


@pytest.fixture(scope="module")
def deployed(cfg: Config) -> Deployed:
    sandbox = Sandbox(REGION)
    sandbox.start()
    try:
        sandbox.reset()  # moto's backends live as long as the process; other test modules may have used them
        started = time.perf_counter()
        ids = sandbox.setup_organization(cfg)
        sandbox.client("s3").create_bucket(Bucket=STAGING_BUCKET,
                                           CreateBucketConfiguration={"LocationConstraint": REGION})  # fmt: skip
        targets: dict[str, str] = {}
        name_servers = ""
        # dependency order, so exports and outputs exist when needed (the image step is no StackSet)
        for name in build_plan(cfg, TEMPLATES).without_images().order():
            if name != naming.NETWORK:
                targets[name] = _deploy(sandbox, ids, cfg, name, {})
                continue
            # The dev delegation comes from the dev zone's output as a per-account override, the prod one from the
            # StackSet parameters; both must reach the stack.
            zone_account = targets[naming.zone_stackset("dev")]
            dev_zone = _instance_stacks(sandbox, zone_account, naming.zone_stackset("dev"))[0]
            reader = Clients(REGION, endpoint_url=sandbox.endpoint_url).reader(zone_account, REGION)
            outputs = reader.describe_stacks(StackName=dev_zone["StackId"])["Stacks"][0]["Outputs"]
            name_servers = {o["OutputKey"]: o["OutputValue"] for o in outputs}["NameServers"]
            targets[name] = _deploy(sandbox, ids, cfg, name,
                                    {"DevNameServers": "placeholder.invalid", "ProdNameServers": "ns-prod.invalid"},
                                    overrides={"DevNameServers": name_servers})  # fmt: skip
        yield Deployed(sandbox, ids, targets, name_servers, time.perf_counter() - started)
    finally:
        sandbox.stop()


def test_organization_has_every_config_account_in_the_first_bootstrap_ou(deployed: Deployed, cfg: Config) -> None:
    org = deployed.sandbox.client("organizations")
    first_ou = deployed.ids.organizational_unit(cfg.stacksets.bootstrap.organizational_units[0])
    in_ou = {a["Id"] for a in org.list_accounts_for_parent(ParentId=first_ou)["Accounts"]}
    members = {cfg.accounts.central, cfg.accounts.network, cfg.accounts.data} | {
        i.account for i in cfg.instances.values()
    }
    assert in_ou == {deployed.ids.account(a) for a in members}
    assert deployed.ids.account(cfg.accounts.admin) == MANAGEMENT_ACCOUNT
    assert org.describe_organization()["Organization"]["FeatureSet"] == "ALL"


def test_every_template_creates_its_stack_in_exactly_its_target_account(deployed: Deployed) -> None:
    every_account = {*deployed.ids.accounts.values()}
    assert set(deployed.targets) == {p.stem for p in TEMPLATES.glob("*.yaml")}
    for stackset, account in deployed.targets.items():
        instances = deployed.sandbox.client("cloudformation").list_stack_instances(StackSetName=stackset)["Summaries"]
        assert [(i["Account"], i["Region"], i["Status"]) for i in instances] == [(account, REGION, "CURRENT")]
        stacks = _instance_stacks(deployed.sandbox, account, stackset)
        assert [s["StackStatus"] for s in stacks] == ["CREATE_COMPLETE"], stackset
        assert instances[0]["StackId"] == stacks[0]["StackId"]
        for other in every_account - {account}:
            assert _instance_stacks(deployed.sandbox, other, stackset) == [], f"{stackset} leaked into {other}"


def test_zone_name_servers_are_four_names_read_through_the_reader_role(deployed: Deployed) -> None:
    names = deployed.name_servers.split(",")
    assert len(names) == 4 and all(name.startswith("ns-") for name in names)
    account = deployed.targets[naming.zone_stackset("dev")]
    zones = deployed.sandbox.client("route53", account=account).list_hosted_zones()["HostedZones"]
    assert [z["Name"].rstrip(".") for z in zones] == ["dev.analytics.example.com"]
    delegation = deployed.sandbox.client("route53", account=account).get_hosted_zone(Id=zones[0]["Id"])
    assert delegation["DelegationSet"]["NameServers"] == names
    prod = deployed.targets[naming.zone_stackset("prod")]
    prod_zone = deployed.sandbox.client("route53", account=prod).list_hosted_zones()["HostedZones"][0]
    prod_names = deployed.sandbox.client("route53", account=prod).get_hosted_zone(Id=prod_zone["Id"])
    assert prod_names["DelegationSet"]["NameServers"] != names  # each zone its own servers, as in AWS


def test_network_override_merges_with_the_stackset_parameters(deployed: Deployed, cfg: Config) -> None:
    account = deployed.targets[naming.NETWORK]
    stack = _instance_stacks(deployed.sandbox, account, naming.NETWORK)[0]
    described = deployed.sandbox.client("cloudformation", account=account).describe_stacks(StackName=stack["StackId"])
    parameters = {p["ParameterKey"]: p["ParameterValue"] for p in described["Stacks"][0]["Parameters"]}
    assert parameters == {"DevNameServers": deployed.name_servers, "ProdNameServers": "ns-prod.invalid"}
    # The NS records landed in the base zone of the network account, with the dev zone's own servers.
    route53 = deployed.sandbox.client("route53", account=account)
    records = route53.list_resource_record_sets(HostedZoneId=cfg.dns.base_zone_id)["ResourceRecordSets"]
    ns = {r["Name"]: [v["Value"] for v in r["ResourceRecords"]] for r in records if r["Type"] == "NS"}
    assert ns["dev.analytics.example.com."] == deployed.name_servers.split(",")
    assert ns["prod.analytics.example.com."] == ["ns-prod.invalid"]


def test_alias_records_point_at_the_load_balancer_with_a_resolved_zone_id(deployed: Deployed) -> None:
    account = deployed.targets[naming.instance_stackset("dev")]
    route53 = deployed.sandbox.client("route53", account=account)
    zone = route53.list_hosted_zones()["HostedZones"][0]
    records = route53.list_resource_record_sets(HostedZoneId=zone["Id"])["ResourceRecordSets"]
    aliases = [r["AliasTarget"] for r in records if "AliasTarget" in r]
    assert aliases and all(a["HostedZoneId"].startswith("Z") and "Fn::" not in a["HostedZoneId"] for a in aliases)
    listeners = deployed.sandbox.client("elbv2", account=account)
    balancer = listeners.describe_load_balancers()["LoadBalancers"][0]
    protocols = {entry["Protocol"] for entry in listeners.describe_listeners(
        LoadBalancerArn=balancer["LoadBalancerArn"])["Listeners"]}  # fmt: skip
    assert "HTTPS" in protocols


def test_resources_moto_lacks_are_recorded_as_stubs_in_their_account(deployed: Deployed) -> None:
    dev = deployed.targets[naming.instance_stackset("dev")]
    stubbed = {(s.resource_type, s.account) for s in STUBS}
    assert ("AWS::WAFv2::WebACL", dev) in stubbed
    assert ("AWS::WAFv2::WebACLAssociation", dev) in stubbed
    assert ("AWS::Glue::Database", deployed.targets[naming.instance_data_stackset("dev")]) in stubbed
    secrets = deployed.sandbox.client("secretsmanager", account=dev).list_secrets()["SecretList"]
    assert secrets, "the instance's secrets exist in moto's SecretsManager"


def test_sandbox_credentials_do_not_outlive_the_sandbox(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_PROFILE", "real-admin")
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    with Sandbox(REGION) as sandbox:
        assert "AWS_PROFILE" not in os.environ
        identity = Clients(REGION, endpoint_url=sandbox.endpoint_url).client("sts").get_caller_identity()
        assert identity["Account"] == MANAGEMENT_ACCOUNT
    assert os.environ["AWS_PROFILE"] == "real-admin"
    assert "AWS_ACCESS_KEY_ID" not in os.environ


def test_remap_plan_uses_moto_ids_everywhere(cfg: Config) -> None:
    members = {cfg.accounts.admin, cfg.accounts.central, cfg.accounts.network, cfg.accounts.data} | {
        i.account for i in cfg.instances.values()
    }
    ids = IdMap(accounts={a: f"9{a[1:]}" for a in members},
                organizational_units={ou: ou.replace("ou-ab12", "ou-zz99") for ou in
                                      cfg.stacksets.bootstrap.organizational_units})  # fmt: skip
    plan = build_plan(cfg, Path(TEMPLATES))
    remapped = remap_plan(plan, ids)

    def accounts_of(p) -> set[str]:
        found = set()
        for node in p.nodes.values():
            found |= set(node.targets.accounts) | {o.account for o in node.overrides}
            found |= {ref.account for ref in node.output_refs()}
        return found

    assert accounts_of(plan) and accounts_of(plan) <= members
    assert accounts_of(remapped) == {ids.accounts[a] for a in accounts_of(plan)}
    assert {ou for n in remapped.nodes.values() for ou in n.targets.organizational_units} == set(
        ids.organizational_units.values())  # fmt: skip
    network = remapped.nodes[naming.NETWORK]
    refs = [value for _, value in network.overrides[0].parameters if isinstance(value, OutputRef)]
    assert {r.account for r in refs} == {ids.accounts[i.account] for i in cfg.instances.values()}
    assert {n: node.template_body for n, node in remapped.nodes.items()} == {
        n: node.template_body for n, node in plan.nodes.items()
    }  # templates keep the config's literal ids
    # the image step builds in moto's central account, into the bucket the template names after the config's
    assert remapped.images is not None and plan.images is not None
    assert remapped.images.account == ids.accounts[cfg.accounts.central]
    assert remapped.images.bucket == plan.images.bucket == naming.image_build_bucket(cfg.accounts.central, REGION)
    with pytest.raises(SandboxError, match=cfg.accounts.central):
        remap_plan(plan, IdMap(accounts={}, organizational_units=ids.organizational_units))


def test_updates_reach_the_instance_stack_and_operation_ids_are_the_callers(deployed: Deployed) -> None:
    cloudformation = deployed.sandbox.client("cloudformation")
    account = deployed.targets[naming.NETWORK]
    targets = {"OrganizationalUnitIds": list(deployed.ids.organizational_units.values()), "Accounts": [account],
               "AccountFilterType": "INTERSECTION"}  # fmt: skip
    overrides = [{"ParameterKey": "ProdNameServers", "ParameterValue": "ns-1.invalid,ns-2.invalid"}]
    operation = cloudformation.update_stack_instances(StackSetName=naming.NETWORK, Regions=[REGION],
                                                      DeploymentTargets=targets, ParameterOverrides=overrides,
                                                      OperationId="sandbox-update-1")  # fmt: skip
    assert operation["OperationId"] == "sandbox-update-1"
    stack = _instance_stacks(deployed.sandbox, account, naming.NETWORK)[0]
    described = deployed.sandbox.client("cloudformation", account=account).describe_stacks(StackName=stack["StackId"])
    assert described["Stacks"][0]["StackStatus"] == "UPDATE_COMPLETE"
    parameters = {p["ParameterKey"]: p["ParameterValue"] for p in described["Stacks"][0]["Parameters"]}
    # A new override list replaces the old one: DevNameServers falls back to the StackSet value.
    assert parameters == {"DevNameServers": "placeholder.invalid", "ProdNameServers": "ns-1.invalid,ns-2.invalid"}
    with pytest.raises(cloudformation.exceptions.OperationIdAlreadyExistsException):
        cloudformation.update_stack_instances(StackSetName=naming.NETWORK, Regions=[REGION], DeploymentTargets=targets,
                                              ParameterOverrides=overrides, OperationId="sandbox-update-1")  # fmt: skip


def test_delete_by_ou_removes_every_instance_stack_and_the_stackset(deployed: Deployed) -> None:
    """Runs last: deletes what the module deployed, by OU with the INTERSECTION filter, as the destroy command does."""
    cloudformation = deployed.sandbox.client("cloudformation")
    for stackset, account in sorted(deployed.targets.items()):
        cloudformation.delete_stack_instances(
            StackSetName=stackset, Regions=[REGION], RetainStacks=False,
            DeploymentTargets={"OrganizationalUnitIds": list(deployed.ids.organizational_units.values()),
                               "Accounts": [account], "AccountFilterType": "INTERSECTION"})  # fmt: skip
        assert cloudformation.list_stack_instances(StackSetName=stackset)["Summaries"] == []
        statuses = [s["StackStatus"] for s in _instance_stacks(deployed.sandbox, account, stackset)]
        assert statuses == ["DELETE_COMPLETE"], stackset
        cloudformation.delete_stack_set(StackSetName=stackset)
        with pytest.raises(cloudformation.exceptions.StackSetNotFoundException):
            cloudformation.describe_stack_set(StackSetName=stackset)
