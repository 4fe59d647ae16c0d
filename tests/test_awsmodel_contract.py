"""The AWS model's StackSets, Organizations, STS/IAM and S3 rules, one test each, through real boto3 clients.

Each test names the rule of docs/aws_model.md it pins. botocore validates every request, so a call that the real
service model refuses never reaches the model.
"""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError, ParamValidationError

from stacksets.awsmodel.adapter import ModelGap
from stacksets.config import Config
from tests.awsmodel_helpers import clients_for, model_for, scenario

OU, TEAMS = "ou-ab12-11111111", "ou-ab12-22222222"
DEV = "555555555555"
TEMPLATE = """\
Parameters:
  Size: {Type: String, Default: small}
  Token: {Type: String, NoEcho: true, Default: hidden}
Resources:
  Topic: {Type: AWS::SNS::Topic}
Outputs:
  Size: {Value: !Ref Size}
"""


@pytest.fixture
def model(cfg: Config) -> Any:
    return model_for(cfg, scenario(durations={"default": 60}))


@pytest.fixture
def cfn(model: Any, cfg: Config) -> Any:
    return clients_for(model, cfg.default_region).client("cloudformation")


def create(cfn: Any, name: str = "probe", **extra: Any) -> None:
    cfn.create_stack_set(StackSetName=name, TemplateBody=TEMPLATE, PermissionModel="SERVICE_MANAGED",
                         AutoDeployment={"Enabled": False}, ManagedExecution={"Active": True}, CallAs="DELEGATED_ADMIN",
                         **extra)  # fmt: skip


def instances(cfn: Any, accounts: list[str], name: str = "probe", **extra: Any) -> str:
    return cfn.create_stack_instances(
        StackSetName=name, Regions=["eu-west-1"], CallAs="DELEGATED_ADMIN",
        DeploymentTargets={"OrganizationalUnitIds": [OU, TEAMS], "Accounts": accounts,
                           "AccountFilterType": "INTERSECTION"}, **extra)["OperationId"]  # fmt: skip


def status(cfn: Any, operation: str, name: str = "probe") -> str:
    return cfn.describe_stack_set_operation(StackSetName=name, OperationId=operation,
                                            CallAs="DELEGATED_ADMIN")["StackSetOperation"]["Status"]  # fmt: skip


def summaries(cfn: Any, name: str = "probe") -> dict[str, dict[str, Any]]:
    rows = cfn.list_stack_instances(StackSetName=name, CallAs="DELEGATED_ADMIN")["Summaries"]
    return {row["Account"]: row for row in rows}


def test_a_misspelt_parameter_never_reaches_the_model(cfn: Any, model: Any) -> None:
    with pytest.raises(ParamValidationError, match="OperationPreference"):
        cfn.update_stack_instances(StackSetName="x", Regions=["eu-west-1"], Accounts=[DEV], OperationPreference={})
    assert not model.calls


def test_errors_are_the_modeled_exception_classes(cfn: Any) -> None:
    with pytest.raises(cfn.exceptions.StackSetNotFoundException):
        cfn.describe_stack_set(StackSetName="missing", CallAs="DELEGATED_ADMIN")


def test_accounts_have_state_and_pages_hold_at_most_20(cfg: Config) -> None:
    extra = {f"7000000000{i:02d}": {"ou": OU} for i in range(25)}
    model = model_for(cfg, scenario(accounts={**extra, "700000000001": {"ou": OU, "state": "SUSPENDED"}}))
    org = clients_for(model, cfg.default_region).client("organizations")
    first = org.list_accounts_for_parent(ParentId=OU)
    assert len(first["Accounts"]) == 20 and first["NextToken"]
    assert all("Status" not in a and a["State"] for a in first["Accounts"])
    rest = org.list_accounts_for_parent(ParentId=OU, NextToken=first["NextToken"])["Accounts"]
    states = {a["Id"]: a["State"] for a in first["Accounts"] + rest}
    assert states["700000000001"] == "SUSPENDED" and len(states) == 25 + 6  # the config's own six accounts


def test_a_delegated_admin_must_say_so_and_others_are_refused(cfn: Any, cfg: Config) -> None:
    create(cfn)
    with pytest.raises(cfn.exceptions.StackSetNotFoundException):
        cfn.describe_stack_set(StackSetName="probe")  # CallAs SELF: looks in the admin account's own StackSets
    other = model_for(cfg.model_copy(update={"stacksets": cfg.stacksets.model_copy(update={"call_as": None})}))
    with pytest.raises(ClientError, match="not a delegated administrator"):
        clients_for(other, cfg.default_region).client("cloudformation").describe_stack_set(
            StackSetName="probe", CallAs="DELEGATED_ADMIN")


@pytest.mark.parametrize(("targets", "accounts", "message"), [
    ({"OrganizationalUnitIds": [OU], "Accounts": [DEV], "AccountFilterType": "UNION"}, None, "UNION"),
    ({"OrganizationalUnitIds": [OU], "Accounts": [DEV]}, None, "AccountFilterType is required"),
    ({"Accounts": [DEV]}, None, "OrganizationalUnitIds are required"),
    ({"OrganizationalUnitIds": [OU]}, [DEV], "not both"),
])  # fmt: skip
def test_deployment_targets_rules_on_create(cfn: Any, targets: dict, accounts: list | None, message: str) -> None:
    create(cfn)
    extra = {"Accounts": accounts} if accounts else {}
    with pytest.raises(ClientError, match=message):
        cfn.create_stack_instances(StackSetName="probe", Regions=["eu-west-1"], CallAs="DELEGATED_ADMIN",
                                   DeploymentTargets=targets, **extra)  # fmt: skip


def test_operations_run_in_simulated_time_and_queue_behind_each_other(cfn: Any, model: Any) -> None:
    create(cfn)
    first = instances(cfn, [DEV])
    second = cfn.update_stack_set(StackSetName="probe", TemplateBody=TEMPLATE, CallAs="DELEGATED_ADMIN")["OperationId"]
    assert (status(cfn, first), status(cfn, second)) == ("RUNNING", "QUEUED")
    model.clock.sleep(60)
    assert (status(cfn, first), status(cfn, second)) == ("SUCCEEDED", "RUNNING")
    model.clock.sleep(60)
    assert status(cfn, second) == "SUCCEEDED"
    with pytest.raises(cfn.exceptions.OperationIdAlreadyExistsException):
        instances(cfn, [DEV], OperationId=first)


def test_without_managed_execution_a_second_operation_is_refused(cfn: Any) -> None:
    create(cfn, "plain") if False else cfn.create_stack_set(
        StackSetName="plain", TemplateBody=TEMPLATE, PermissionModel="SERVICE_MANAGED", CallAs="DELEGATED_ADMIN",
        AutoDeployment={"Enabled": False})  # fmt: skip
    instances(cfn, [DEV], name="plain")
    with pytest.raises(cfn.exceptions.OperationInProgressException):
        instances(cfn, ["444444444444"], name="plain")


def test_update_of_an_instance_that_does_not_exist_is_refused(cfn: Any) -> None:
    create(cfn)
    with pytest.raises(cfn.exceptions.StackInstanceNotFoundException):
        cfn.update_stack_instances(StackSetName="probe", Regions=["eu-west-1"], CallAs="DELEGATED_ADMIN",
                                   DeploymentTargets={"OrganizationalUnitIds": [OU], "Accounts": [DEV],
                                                      "AccountFilterType": "INTERSECTION"})  # fmt: skip


def test_describe_stack_set_returns_defaults_and_masks_no_echo(cfn: Any) -> None:
    create(cfn, Parameters=[{"ParameterKey": "Size", "ParameterValue": "large"}])
    parameters = cfn.describe_stack_set(StackSetName="probe", CallAs="DELEGATED_ADMIN")["StackSet"]["Parameters"]
    assert {p["ParameterKey"]: p["ParameterValue"] for p in parameters} == {"Size": "large", "Token": "****"}


def test_management_account_gets_no_instance_and_suspended_ones_are_skipped(cfg: Config) -> None:
    model = model_for(cfg, scenario(management_account={"id": "999999999999", "ou": OU},
                                    accounts={"777777777777": {"ou": OU, "state": "SUSPENDED"}}))
    cfn = clients_for(model, cfg.default_region).client("cloudformation")
    create(cfn)
    operation = cfn.create_stack_instances(StackSetName="probe", Regions=["eu-west-1"], CallAs="DELEGATED_ADMIN",
                                           DeploymentTargets={"OrganizationalUnitIds": [OU]})["OperationId"]
    model.clock.sleep(600)
    assert status(cfn, operation) == "SUCCEEDED"
    rows = summaries(cfn)
    assert "999999999999" not in rows
    assert rows["777777777777"]["StackInstanceStatus"]["DetailedStatus"] == "SKIPPED_SUSPENDED_ACCOUNT"
    assert rows[DEV]["StackInstanceStatus"]["DetailedStatus"] == "SUCCEEDED" and rows[DEV]["StackId"]


def test_failure_tolerance_is_per_region_and_cancels_the_rest(cfg: Config) -> None:
    faults = [{"stackset": "rstudio-central", "account": a, "resource": "Topic"} for a in ("222222222222", DEV)]
    model = model_for(cfg, scenario(faults=faults))
    cfn = clients_for(model, cfg.default_region).client("cloudformation")
    create(cfn, "rstudio-central")
    operation = instances(cfn, ["222222222222", "333333333333", "444444444444", DEV], name="rstudio-central",
                          OperationPreferences={"MaxConcurrentCount": 1, "FailureToleranceCount": 1})  # fmt: skip
    model.clock.sleep(3600)
    assert status(cfn, operation, "rstudio-central") == "FAILED"
    detailed = {a: r["StackInstanceStatus"]["DetailedStatus"] for a, r in summaries(cfn, "rstudio-central").items()}
    # one at a time in account order: 222 fails, 333 and 444 succeed, 555 fails (2 > 1): nothing left to cancel
    assert detailed == {"222222222222": "FAILED", "333333333333": "SUCCEEDED", "444444444444": "SUCCEEDED",
                        DEV: "FAILED"}  # fmt: skip


def test_update_stack_set_marks_every_instance_outdated(cfn: Any, model: Any) -> None:
    create(cfn)
    instances(cfn, [DEV, "444444444444"])
    model.clock.sleep(60)
    cfn.update_stack_set(StackSetName="probe", TemplateBody=TEMPLATE, CallAs="DELEGATED_ADMIN")
    assert {r["Status"] for r in summaries(cfn).values()} == {"OUTDATED"}


def test_delete_stack_set_refuses_while_instances_or_operations_remain(cfn: Any, model: Any) -> None:
    create(cfn)
    instances(cfn, [DEV])
    with pytest.raises(cfn.exceptions.OperationInProgressException):
        cfn.delete_stack_set(StackSetName="probe", CallAs="DELEGATED_ADMIN")
    model.clock.sleep(60)
    with pytest.raises(cfn.exceptions.StackSetNotEmptyException):
        cfn.delete_stack_set(StackSetName="probe", CallAs="DELEGATED_ADMIN")


def test_assume_role_needs_the_role_and_the_role_only_allows_its_actions(cfg: Config, cfn: Any, model: Any) -> None:
    clients = clients_for(model, cfg.default_region)
    with pytest.raises(Exception, match="cannot assume"):
        clients.reader(DEV, cfg.default_region).list_stacks()
    cfn.create_stack_set(StackSetName="rstudio-bootstrap", PermissionModel="SERVICE_MANAGED",
                         TemplateBody=open("templates/rstudio-bootstrap.yaml", encoding="utf-8").read(),
                         Capabilities=["CAPABILITY_NAMED_IAM"], AutoDeployment={"Enabled": False},
                         ManagedExecution={"Active": True}, CallAs="DELEGATED_ADMIN")  # fmt: skip
    instances(cfn, [DEV], name="rstudio-bootstrap")
    model.clock.sleep(60)
    reader = clients_for(model, cfg.default_region).reader(DEV, cfg.default_region)
    [stack] = reader.list_stacks()["StackSummaries"]
    assert stack["StackName"].startswith("StackSet-rstudio-bootstrap-")
    with pytest.raises(ClientError, match="cloudformation:DescribeStackResourceDrifts"):
        reader.describe_stack_resource_drifts(StackName=stack["StackName"])


def test_named_iam_needs_the_capability(cfn: Any) -> None:
    with pytest.raises(ClientError, match="CAPABILITY_NAMED_IAM"):
        cfn.create_stack_set(StackSetName="rstudio-bootstrap", PermissionModel="SERVICE_MANAGED",
                             TemplateBody=open("templates/rstudio-bootstrap.yaml", encoding="utf-8").read(),
                             AutoDeployment={"Enabled": False}, CallAs="DELEGATED_ADMIN")  # fmt: skip


def test_wire_faults_and_request_rates_throttle(cfg: Config) -> None:
    model = model_for(cfg, scenario(faults=[{"api": "list_roots", "error": "Throttling", "times": 2}],
                                    limits={"api_requests_per_second": 1, "api_burst": 3}))
    org = clients_for(model, cfg.default_region).client("organizations")
    for _ in range(2):
        with pytest.raises(ClientError, match="Throttling"):
            org.list_roots()
    org.list_roots()
    org.list_roots()
    org.list_roots()
    with pytest.raises(ClientError, match="Rate exceeded"):
        org.list_roots()  # the burst of 3 is spent and no simulated time has passed
    model.clock.sleep(1)
    org.list_roots()


def test_template_urls_are_read_with_the_partition_host(cfg: Config, model: Any) -> None:
    clients = clients_for(model, "cn-north-1")
    s3 = clients.client("s3")
    s3.create_bucket(Bucket="staging", CreateBucketConfiguration={"LocationConstraint": "cn-north-1"})
    s3.put_object(Bucket="staging", Key="t.yaml", Body=TEMPLATE.encode())
    cfn = clients.client("cloudformation")
    with pytest.raises(ClientError, match="TemplateURL"):
        cfn.create_stack_set(StackSetName="cn", TemplateURL="https://staging.s3.cn-north-1.amazonaws.com/t.yaml")
    cfn.create_stack_set(StackSetName="cn", TemplateURL="https://staging.s3.cn-north-1.amazonaws.com.cn/t.yaml")


def test_answers_are_checked_against_the_output_shape(cfn: Any, model: Any) -> None:
    model.handlers[("cloudformation", "list_stack_instances")] = lambda caller, params: {"Summaries": "oops"}
    with pytest.raises(ModelGap, match="shape"):
        cfn.list_stack_instances(StackSetName="probe", CallAs="DELEGATED_ADMIN")
