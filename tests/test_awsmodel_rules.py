"""The AWS model's rules that tests/test_awsmodel_contract.py and tests/test_awsmodel_engine.py leave untested, one
test each, through real boto3 clients; and the guard that keeps docs/aws_model.md's rule table complete.

Each test names the rule id of docs/aws_model.md it pins. A test marked xfail(strict=True) shows the model answering
differently from AWS: the reason names the module, the function and the source.
"""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from stacksets.awsmodel.adapter import CLOSED_ENDPOINT
from stacksets.awsmodel.engine_rules import RULES
from stacksets.build_context import context_tag
from stacksets.config import Config
from stacksets.naming import IMAGE_BUILD_PROJECT
from tests.awsmodel_helpers import clients_for, model_for, scenario

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "aws_model.md"
OU, TEAMS, NESTED = "ou-ab12-11111111", "ou-ab12-22222222", "ou-ab12-33333333"
REGION, OTHER = "eu-west-1", "us-east-1"
CENTRAL, NETWORK, DATA, DEV = "222222222222", "333333333333", "444444444444", "555555555555"
AS_ADMIN = {"CallAs": "DELEGATED_ADMIN"}
TOPIC = """\
Parameters:
  Size: {Type: String, Default: small, AllowedValues: [small, large]}
  Token: {Type: String, NoEcho: true, Default: hidden}
Resources:
  Topic: {Type: AWS::SNS::Topic}
"""
EXPORTER = "Resources:\n  Topic: {Type: AWS::SNS::Topic}\nOutputs:\n  Arn:\n    Value: !Ref Topic\n" \
           "    Export: {Name: shared-topic}\n"
IMPORTER = "Resources:\n  Queue:\n    Type: AWS::SQS::Queue\n    Properties:\n" \
           "      QueueName: {'Fn::ImportValue': shared-topic}\n"
PROBE_ROLE = "rstudio-probe-role"
PROBE_BUCKET = "rstudio-probe-bucket"
PROBE_REPOSITORY = "rstudio-probe-images"
PROBE = f"""\
Resources:
  Role:
    Type: AWS::IAM::Role
    Properties:
      RoleName: {PROBE_ROLE}
      AssumeRolePolicyDocument: {{Statement: [{{Effect: Allow, Principal: {{AWS: '111111111111'}},
                                  Action: 'sts:AssumeRole'}}]}}
      Policies:
        - PolicyName: probe
          PolicyDocument:
            Statement:
              - {{Effect: Allow, Action: ['cloudformation:*', 's3:GetObject', 's3:PutObject', 'ecr:*',
                                         'codebuild:*'], Resource: '*'}}
              - {{Effect: Deny, Action: 'cloudformation:ListStacks', Resource: '*'}}
              - {{Effect: Deny, Action: 'cloudformation:DescribeStacks', Resource: '*',
                 Condition: {{Bool: {{'aws:MultiFactorAuthPresent': 'false'}}}}}}
  Bucket:
    Type: AWS::S3::Bucket
    Properties: {{BucketName: {PROBE_BUCKET}}}
  Repository:
    Type: AWS::ECR::Repository
    Properties: {{RepositoryName: {PROBE_REPOSITORY}, ImageTagMutability: IMMUTABLE}}
  Project:
    Type: AWS::CodeBuild::Project
    Properties: {{Name: {IMAGE_BUILD_PROJECT}}}
"""


# --- helpers of this file only ----------------------------------------------------------------------------------


def cfn_of(model: Any, region: str = REGION) -> Any:
    return clients_for(model, region).client("cloudformation")


def new_set(cfn: Any, name: str = "rstudio-probe", body: str = TOPIC, **extra: Any) -> None:
    options = {"PermissionModel": "SERVICE_MANAGED", "AutoDeployment": {"Enabled": False}, **AS_ADMIN, **extra}
    cfn.create_stack_set(StackSetName=name, TemplateBody=body, **options)


def deploy(cfn: Any, accounts: list[str], name: str = "rstudio-probe", regions: tuple[str, ...] = (REGION,),
           **extra: Any) -> str:  # fmt: skip
    targets = {"OrganizationalUnitIds": [OU, TEAMS], "Accounts": accounts, "AccountFilterType": "INTERSECTION"}
    return cfn.create_stack_instances(StackSetName=name, Regions=list(regions), DeploymentTargets=targets, **AS_ADMIN,
                                      **extra)["OperationId"]  # fmt: skip


def undeploy(cfn: Any, accounts: list[str], retain: bool, name: str = "rstudio-probe") -> str:
    targets = {"OrganizationalUnitIds": [OU, TEAMS], "Accounts": accounts, "AccountFilterType": "INTERSECTION"}
    return cfn.delete_stack_instances(StackSetName=name, Regions=[REGION], DeploymentTargets=targets,
                                      RetainStacks=retain, **AS_ADMIN)["OperationId"]  # fmt: skip


def op_status(cfn: Any, operation: str, name: str = "rstudio-probe") -> str:
    answer = cfn.describe_stack_set_operation(StackSetName=name, OperationId=operation, **AS_ADMIN)
    return answer["StackSetOperation"]["Status"]


def results(cfn: Any, operation: str, name: str = "rstudio-probe") -> dict[tuple[str, str], str]:
    rows = cfn.list_stack_set_operation_results(StackSetName=name, OperationId=operation, **AS_ADMIN)["Summaries"]
    return {(row["Account"], row["Region"]): row["Status"] for row in rows}


def instance(cfn: Any, account: str, name: str = "rstudio-probe", region: str = REGION) -> dict[str, Any]:
    return cfn.describe_stack_instance(StackSetName=name, StackInstanceAccount=account, StackInstanceRegion=region,
                                       **AS_ADMIN)["StackInstance"]  # fmt: skip


def code(error: pytest.ExceptionInfo[ClientError]) -> str:
    return error.value.response["Error"]["Code"]


def with_probe(model: Any) -> None:
    """The probe StackSet in DEV: a role the tests assume, a bucket, an ECR repository and the image build project."""
    cfn = cfn_of(model)
    new_set(cfn, "rstudio-probe-iam", PROBE, Capabilities=["CAPABILITY_NAMED_IAM"])
    deploy(cfn, [DEV], "rstudio-probe-iam")
    model.clock.sleep(60)


def assumed(model: Any, service: str, role: str = PROBE_ROLE, account: str = DEV) -> Any:
    """A boto3 client with the credentials STS on the model hands out for `role`."""
    sts = clients_for(model, REGION).client("sts")
    keys = sts.assume_role(RoleArn=f"arn:aws:iam::{account}:role/{role}", RoleSessionName="rules")["Credentials"]
    client = boto3.session.Session(aws_access_key_id=keys["AccessKeyId"], aws_secret_access_key=keys["SecretAccessKey"],
                                   aws_session_token=keys["SessionToken"]).client(
        service, region_name=REGION, endpoint_url=CLOSED_ENDPOINT)  # fmt: skip
    model.install(client)
    return client


@pytest.fixture
def model(cfg: Config) -> Any:
    return model_for(cfg, scenario(durations={"default": 60}))


@pytest.fixture
def cfn(model: Any) -> Any:
    return cfn_of(model)


# --- the table ----------------------------------------------------------------------------------------------------


def table_rows() -> list[list[str]]:
    """The cells of docs/aws_model.md's rule table (the one whose header starts with `rule id`)."""
    rows, inside = [], False
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if line.startswith("| rule id"):
            inside = True
            continue
        if inside and not line.startswith("|"):
            break
        if inside and not set(line) <= set("|-: "):
            rows.append([cell.strip() for cell in line.strip().strip("|").split(" | ")])
    return rows


def test_every_engine_rule_has_a_row_and_every_row_a_test_that_exists() -> None:
    rows = table_rows()
    ids = [row[0].strip("`") for row in rows]
    assert len(rows) > len(RULES) and all(len(row) == 5 for row in rows), "the table lost its shape"
    assert len(ids) == len(set(ids)), "a rule id appears twice"
    missing = [rule for rule, _, _ in RULES if rule not in ids]
    assert not missing, f"engine_rules.RULES ids without a row in docs/aws_model.md: {missing}"
    for row in rows:
        named = re.findall(r"`(tests/[\w/]+\.py)::(\w+)", row[3])
        assert named, f"row {row[0]} names no test"
        for path, test in named:
            assert re.search(rf"^def {test}\(", (ROOT / path).read_text(encoding="utf-8"), re.M), (row[0], path, test)
        assert re.fullmatch(r"yes( \(.+\))?|stricter reading, unconfirmed: .+", row[4]), row


# --- StackSets: operations ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("concurrency", "done_after"), [("PARALLEL", 60), ("SEQUENTIAL", 120)])
def test_ss_region_concurrency(cfn: Any, model: Any, concurrency: str, done_after: int) -> None:
    new_set(cfn)
    operation = deploy(cfn, [DEV], regions=(REGION, OTHER),
                       OperationPreferences={"RegionConcurrencyType": concurrency})  # fmt: skip
    model.clock.sleep(60)
    assert op_status(cfn, operation) == ("SUCCEEDED" if done_after == 60 else "RUNNING")
    model.clock.sleep(60)
    assert op_status(cfn, operation) == "SUCCEEDED"


def test_ss_tolerance_stops_the_region_and_later_regions(cfg: Config) -> None:
    model = model_for(cfg, scenario(faults=[{"stackset": "rstudio-probe", "account": DATA, "resource": "Topic",
                                             "region": REGION}]))  # fmt: skip
    cfn = cfn_of(model)
    new_set(cfn)
    operation = deploy(cfn, [DATA, DEV], regions=(REGION, OTHER),
                       OperationPreferences={"RegionOrder": [REGION, OTHER], "RegionConcurrencyType": "SEQUENTIAL",
                                             "MaxConcurrentCount": 1, "FailureToleranceCount": 0})  # fmt: skip
    model.clock.sleep(600)
    assert op_status(cfn, operation) == "FAILED"
    assert results(cfn, operation) == {(DATA, REGION): "FAILED", (DEV, REGION): "CANCELLED",
                                       (DATA, OTHER): "CANCELLED", (DEV, OTHER): "CANCELLED"}  # fmt: skip
    assert instance(cfn, DEV)["StackInstanceStatus"]["DetailedStatus"] == "CANCELLED"


def test_ss_percentages_round_down(cfg: Config) -> None:
    faults = [{"stackset": "rstudio-probe", "account": a, "resource": "Topic"} for a in (CENTRAL, NETWORK)]
    model = model_for(cfg, scenario(faults=faults))
    cfn = cfn_of(model)
    new_set(cfn)
    # 4 accounts: 10 % concurrency rounds down to 0, so 1 at a time; 49 % tolerance rounds down to 1 failure
    operation = deploy(cfn, [CENTRAL, NETWORK, DATA, DEV], OperationPreferences={
        "MaxConcurrentPercentage": 10, "FailureTolerancePercentage": 49, "ConcurrencyMode": "SOFT_FAILURE_TOLERANCE"})
    model.clock.sleep(180)
    assert op_status(cfn, operation) == "RUNNING"  # four batches of one take 240 s
    model.clock.sleep(60)
    assert op_status(cfn, operation) == "FAILED"
    assert results(cfn, operation)[(CENTRAL, REGION)] == "FAILED"
    assert set(results(cfn, operation).values()) == {"FAILED", "CANCELLED"}  # 2 > 1: the rest was cancelled


@pytest.mark.parametrize(("preferences", "message", "allowed"), [
    ({"MaxConcurrentCount": 2, "MaxConcurrentPercentage": 50}, "not both", {"MaxConcurrentCount": 2}),
    ({"FailureToleranceCount": 1, "FailureTolerancePercentage": 50}, "not both", {"FailureToleranceCount": 1}),
])  # fmt: skip
def test_ss_operation_preferences(cfn: Any, preferences: dict[str, int], message: str, allowed: dict) -> None:
    new_set(cfn)
    with pytest.raises(ClientError, match=message):
        deploy(cfn, [DEV], OperationPreferences=preferences)
    deploy(cfn, [DEV], OperationPreferences=allowed)


def test_ss_create_retries_outdated_instances(cfg: Config) -> None:
    model = model_for(cfg, scenario(faults=[{"stackset": "rstudio-probe", "account": DEV, "resource": "Topic"}]))
    cfn = cfn_of(model)
    new_set(cfn)
    first = deploy(cfn, [DEV])
    model.clock.sleep(60)
    assert op_status(cfn, first) == "FAILED"
    failed = instance(cfn, DEV)
    assert (failed["Status"], failed["StackInstanceStatus"]["DetailedStatus"]) == ("OUTDATED", "FAILED")
    second = deploy(cfn, [DEV])
    model.clock.sleep(60)
    retried = instance(cfn, DEV)
    assert op_status(cfn, second) == "SUCCEEDED" and retried["Status"] == "CURRENT"
    assert retried["StackId"] != failed["StackId"]  # the ROLLBACK_COMPLETE stack was replaced, not updated


def test_ss_unchanged_instance_update(cfn: Any, model: Any) -> None:
    new_set(cfn)
    created = deploy(cfn, [DEV])
    model.clock.sleep(60)
    assert op_status(cfn, created) == "SUCCEEDED"  # a request: the model moves operations on when it is asked
    [stack] = model.world.stacks.live(DEV)
    events = len(stack.events)
    operation = cfn.update_stack_set(StackSetName="rstudio-probe", UsePreviousTemplate=True, **AS_ADMIN)["OperationId"]
    model.clock.sleep(60)
    assert op_status(cfn, operation) == "SUCCEEDED" and instance(cfn, DEV)["Status"] == "CURRENT"
    assert len(stack.events) == events and stack.status == "CREATE_COMPLETE"


def test_ss_drift_detection(cfn: Any, model: Any) -> None:
    new_set(cfn)
    deploy(cfn, [DEV, DATA])
    model.clock.sleep(120)  # one account at a time by default
    model.drift("rstudio-probe", DEV, REGION, "Topic", "AWS::SNS::Topic")
    operation = cfn.detect_stack_set_drift(StackSetName="rstudio-probe", **AS_ADMIN)["OperationId"]
    model.clock.sleep(60)
    assert op_status(cfn, operation) == "SUCCEEDED"
    details = cfn.describe_stack_set(StackSetName="rstudio-probe", **AS_ADMIN)["StackSet"]
    assert details["StackSetDriftDetectionDetails"]["DriftStatus"] == "DRIFTED"
    assert (instance(cfn, DEV)["DriftStatus"], instance(cfn, DATA)["DriftStatus"]) == ("DRIFTED", "IN_SYNC")
    [row] = cfn.list_stack_instance_resource_drifts(StackSetName="rstudio-probe", StackInstanceAccount=DEV,
                                                    StackInstanceRegion=REGION, OperationId=operation,
                                                    **AS_ADMIN)["Summaries"]  # fmt: skip
    assert (row["LogicalResourceId"], row["StackResourceDriftStatus"]) == ("Topic", "MODIFIED")


def test_ss_failed_delete_is_inoperable_and_retain_stacks_keeps_the_stack(cfn: Any, model: Any) -> None:
    new_set(cfn, "rstudio-exporter", EXPORTER)
    new_set(cfn, "rstudio-importer", IMPORTER)
    deploy(cfn, [DEV], "rstudio-exporter")
    model.clock.sleep(60)
    deploy(cfn, [DEV], "rstudio-importer")
    model.clock.sleep(60)
    failed = undeploy(cfn, [DEV], retain=False, name="rstudio-exporter")
    model.clock.sleep(60)
    assert op_status(cfn, failed, "rstudio-exporter") == "FAILED"
    stuck = instance(cfn, DEV, "rstudio-exporter")
    assert stuck["Status"] == "INOPERABLE"
    assert re.search(r"Export shared-topic cannot be deleted as it is in use by StackSet-rstudio-importer-",
                     stuck["StatusReason"])  # fmt: skip
    kept = undeploy(cfn, [DEV], retain=True, name="rstudio-exporter")
    model.clock.sleep(60)
    assert op_status(cfn, kept, "rstudio-exporter") == "SUCCEEDED"
    assert cfn.list_stack_instances(StackSetName="rstudio-exporter", **AS_ADMIN)["Summaries"] == []
    assert sorted(s.stackset for s in model.world.stacks.live(DEV)) == ["rstudio-exporter", "rstudio-importer"]


def test_ss_detailed_status_follows_each_instances_operation(cfn: Any, model: Any) -> None:
    def detailed() -> dict[str, tuple[str, str]]:
        rows = cfn.list_stack_instances(StackSetName="rstudio-probe", **AS_ADMIN)["Summaries"]
        return {row["Account"]: (row["Status"], row["StackInstanceStatus"]["DetailedStatus"]) for row in rows}

    new_set(cfn, ManagedExecution={"Active": True})
    first = deploy(cfn, [DATA])
    second = deploy(cfn, [DEV])  # queued behind the first: its instance has yet to start
    assert detailed() == {DATA: ("OUTDATED", "RUNNING"), DEV: ("OUTDATED", "PENDING")}
    model.clock.sleep(60)
    assert op_status(cfn, first) == "SUCCEEDED" and op_status(cfn, second) == "RUNNING"
    assert detailed() == {DATA: ("CURRENT", "SUCCEEDED"), DEV: ("OUTDATED", "RUNNING")}
    model.clock.sleep(60)
    assert detailed() == {DATA: ("CURRENT", "SUCCEEDED"), DEV: ("CURRENT", "SUCCEEDED")}


def test_ss_stack_instance_pages(cfn: Any, model: Any) -> None:
    new_set(cfn)
    deploy(cfn, [DATA, DEV])
    first = cfn.list_stack_instances(StackSetName="rstudio-probe", MaxResults=1, **AS_ADMIN)
    assert [r["Account"] for r in first["Summaries"]] == [DATA] and first["NextToken"]
    rest = cfn.list_stack_instances(StackSetName="rstudio-probe", NextToken=first["NextToken"], **AS_ADMIN)
    assert [r["Account"] for r in rest["Summaries"]] == [DEV] and "NextToken" not in rest


# --- StackSets: the StackSet itself -------------------------------------------------------------------------------


def test_ss_names_are_unique_and_bounded_by_the_quota(cfg: Config) -> None:
    model = model_for(cfg, scenario(limits={"stack_sets_per_administrator": 1}))
    cfn = cfn_of(model)
    new_set(cfn)
    with pytest.raises(cfn.exceptions.NameAlreadyExistsException):
        new_set(cfn)
    with pytest.raises(cfn.exceptions.LimitExceededException):
        new_set(cfn, "rstudio-second")


@pytest.mark.parametrize(("extra", "message"), [
    ({"TemplateBody": "Resources: ["}, "Template format error"),
    ({"TemplateBody": "Parameters: {}\n"}, "Template format error: At least one Resources member"),
    ({"Parameters": [{"ParameterKey": "Nope", "ParameterValue": "x"}]}, r"\[Nope\] do not exist"),
    ({"Parameters": [{"ParameterKey": "Size", "UsePreviousValue": True}]}, "no previous value"),
])  # fmt: skip
def test_ss_template_and_parameters_checked_up_front(cfn: Any, extra: dict[str, Any], message: str) -> None:
    options = {"TemplateBody": TOPIC, **extra}
    with pytest.raises(ClientError, match=message) as refused:
        cfn.create_stack_set(StackSetName="rstudio-probe", PermissionModel="SERVICE_MANAGED",
                             AutoDeployment={"Enabled": False}, **AS_ADMIN, **options)  # fmt: skip
    assert code(refused) == "ValidationError"


def test_ss_capability_iam_for_unnamed_iam_resources(cfn: Any) -> None:
    unnamed = "Resources:\n  R:\n    Type: AWS::IAM::Role\n    Properties: {AssumeRolePolicyDocument: {}}\n"
    with pytest.raises(cfn.exceptions.InsufficientCapabilitiesException, match=r"\[CAPABILITY_IAM\]"):
        new_set(cfn, body=unnamed)
    new_set(cfn, body=unnamed, Capabilities=["CAPABILITY_NAMED_IAM"])  # the named capability covers unnamed ones


def test_ss_call_as_and_auto_deployment_with_the_permission_model(cfn: Any) -> None:
    with pytest.raises(ClientError, match="valid only for SERVICE_MANAGED"):
        cfn.create_stack_set(StackSetName="rstudio-self", TemplateBody=TOPIC, PermissionModel="SELF_MANAGED",
                             **AS_ADMIN)  # fmt: skip
    with pytest.raises(ClientError, match="AutoDeployment is required"):
        cfn.create_stack_set(StackSetName="rstudio-probe", TemplateBody=TOPIC, PermissionModel="SERVICE_MANAGED",
                             **AS_ADMIN)  # fmt: skip


def test_ss_managed_execution_cannot_change_in_an_update(cfn: Any) -> None:
    new_set(cfn, ManagedExecution={"Active": False})
    with pytest.raises(cfn.exceptions.InvalidOperationException, match="Cannot update ManagedExecution"):
        cfn.update_stack_set(StackSetName="rstudio-probe", UsePreviousTemplate=True, ManagedExecution={"Active": True},
                             **AS_ADMIN)  # fmt: skip


def test_ss_parameter_overrides_name_stack_set_parameters(cfn: Any, model: Any) -> None:
    new_set(cfn, Parameters=[{"ParameterKey": "Size", "ParameterValue": "small"}])
    deploy(cfn, [DEV])
    model.clock.sleep(60)
    targets = {"OrganizationalUnitIds": [OU], "Accounts": [DEV], "AccountFilterType": "INTERSECTION"}
    with pytest.raises(ClientError, match=r"\[Nope\] is not a parameter"):
        cfn.update_stack_instances(StackSetName="rstudio-probe", Regions=[REGION], DeploymentTargets=targets,
                                   ParameterOverrides=[{"ParameterKey": "Nope", "ParameterValue": "x"}], **AS_ADMIN)
    cfn.update_stack_instances(StackSetName="rstudio-probe", Regions=[REGION], DeploymentTargets=targets,
                               ParameterOverrides=[{"ParameterKey": "Size", "ParameterValue": "large"}], **AS_ADMIN)
    model.clock.sleep(60)
    assert instance(cfn, DEV)["ParameterOverrides"] == [{"ParameterKey": "Size", "ParameterValue": "large"}]


def test_ss_stack_parameters_are_checked_per_instance(cfn: Any, model: Any) -> None:
    new_set(cfn, Parameters=[{"ParameterKey": "Size", "ParameterValue": "huge"}])  # AllowedValues: small, large
    operation = deploy(cfn, [DEV])
    model.clock.sleep(60)
    assert op_status(cfn, operation) == "FAILED"
    assert "Parameter 'Size' must be one of AllowedValues" in instance(cfn, DEV)["StatusReason"]


GREETER = """\
Parameters:
  Greeting: {Type: String, Default: hello}
Resources:
  Role: {Type: AWS::IAM::Role, Properties: {AssumeRolePolicyDocument: {}}}
  Fn:
    Type: AWS::Lambda::Function
    Properties:
      Role: !GetAtt Role.Arn
      Handler: index.handler
      Runtime: python3.12
      Environment: {Variables: {MARK: '!'}}
      Code:
        ZipFile: |
          import json, os, urllib.request
          def handler(event, context):
              old = (event.get("OldResourceProperties") or {}).get("Greeting", "")
              new = event["ResourceProperties"]["Greeting"]
              seen = f"{event['RequestType']} {old}>{new}{os.environ['MARK']} in {os.environ['AWS_REGION']}"
              body = {"Status": "SUCCESS", "PhysicalResourceId": "greeter", "Data": {"Seen": seen}}
              answer = urllib.request.Request(event["ResponseURL"], json.dumps(body).encode(), method="PUT")
              urllib.request.urlopen(answer)
  Greet:
    Type: Custom::Greet
    Properties: {ServiceToken: !GetAtt Fn.Arn, Greeting: !Ref Greeting}
Outputs:
  Seen: {Value: !GetAtt Greet.Seen}
"""


def test_custom_resources_get_update_requests_and_their_functions_environment(cfn: Any, model: Any) -> None:
    """An update that changes a custom resource's properties sends an Update with the old ones, and its answer's
    Data replaces the attributes; the function sees its own Environment variables and the Region."""
    new_set(cfn, body=GREETER, Capabilities=["CAPABILITY_IAM"])
    created = deploy(cfn, [DEV])
    model.clock.sleep(60)
    assert op_status(cfn, created) == "SUCCEEDED"
    [stack] = model.world.stacks.live(DEV)
    assert stack.outputs["Seen"] == f"Create >hello! in {REGION}"
    updated = cfn.update_stack_set(StackSetName="rstudio-probe", UsePreviousTemplate=True,
                                   Capabilities=["CAPABILITY_IAM"], **AS_ADMIN,
                                   Parameters=[{"ParameterKey": "Greeting", "ParameterValue": "bye"}])["OperationId"]
    model.clock.sleep(60)
    assert op_status(cfn, updated) == "SUCCEEDED"
    [stack] = model.world.stacks.live(DEV)
    assert stack.status == "UPDATE_COMPLETE" and stack.outputs["Seen"] == f"Update hello>bye! in {REGION}"


def test_ss_update_cannot_change_a_resource_type(cfn: Any, model: Any) -> None:
    new_set(cfn)
    deploy(cfn, [DEV])
    model.clock.sleep(60)
    operation = cfn.update_stack_set(StackSetName="rstudio-probe", TemplateBody=TOPIC.replace("SNS::Topic",
                                     "SQS::Queue"), **AS_ADMIN)["OperationId"]  # fmt: skip
    model.clock.sleep(60)
    assert op_status(cfn, operation) == "FAILED"
    assert instance(cfn, DEV)["StatusReason"].startswith("Update of resource type is not permitted.")


def test_ss_export_names_are_unique_per_account_and_region(cfn: Any, model: Any) -> None:
    for name in ("rstudio-exporter", "rstudio-second"):
        new_set(cfn, name, EXPORTER)
        operation = deploy(cfn, [DEV], name)
        model.clock.sleep(60)
    assert op_status(cfn, operation, "rstudio-second") == "FAILED"
    [stack] = [s for s in model.world.stacks.by_place[(DEV, REGION)] if s.stackset == "rstudio-second"]
    assert stack.status == "ROLLBACK_COMPLETE"
    assert any(e.reason.startswith("Export with name shared-topic is already exported by stack StackSet-rstudio-"
                                   "exporter-") for e in stack.events)  # fmt: skip


# --- StackSets: targets ---------------------------------------------------------------------------------------------


def test_ss_self_managed_targets_accounts(cfn: Any) -> None:
    cfn.create_stack_set(StackSetName="rstudio-self", TemplateBody=TOPIC, PermissionModel="SELF_MANAGED")
    with pytest.raises(ClientError, match="can only have accounts as target"):
        cfn.create_stack_instances(StackSetName="rstudio-self", Regions=[REGION],
                                   DeploymentTargets={"OrganizationalUnitIds": [OU]})  # fmt: skip
    with pytest.raises(ClientError, match="Accounts must be specified"):
        cfn.create_stack_instances(StackSetName="rstudio-self", Regions=[REGION])
    cfn.create_stack_instances(StackSetName="rstudio-self", Regions=[REGION], Accounts=[DEV])
    with pytest.raises(cfn.exceptions.StackSetNotFoundException):
        cfn.describe_stack_set(StackSetName="rstudio-self", **AS_ADMIN)  # a delegated admin sees service-managed only


def test_ss_ous_expand_recursively_and_must_exist(cfg: Config) -> None:
    model = model_for(cfg, scenario(organizational_units={NESTED: {"parent": OU, "name": "nested"}},
                                    accounts={"777777777777": {"ou": NESTED}}))  # fmt: skip
    cfn = cfn_of(model)
    new_set(cfn)
    cfn.create_stack_instances(StackSetName="rstudio-probe", Regions=[REGION],
                               DeploymentTargets={"OrganizationalUnitIds": [OU]}, **AS_ADMIN)  # fmt: skip
    rows = cfn.list_stack_instances(StackSetName="rstudio-probe", **AS_ADMIN)["Summaries"]
    nested = next(r for r in rows if r["Account"] == "777777777777")
    assert nested["OrganizationalUnitId"] == OU  # the targeted OU, not the child OU it sits in
    with pytest.raises(ClientError, match="does not exist"):
        cfn.create_stack_instances(StackSetName="rstudio-probe", Regions=[REGION],
                                   DeploymentTargets={"OrganizationalUnitIds": ["ou-ab12-99999999"]}, **AS_ADMIN)


# --- Organizations, STS, IAM ----------------------------------------------------------------------------------------


def test_org_unknown_parent(model: Any) -> None:
    org = clients_for(model, REGION).client("organizations")
    with pytest.raises(org.exceptions.ParentNotFoundException):
        org.list_children(ParentId="ou-ab12-99999999", ChildType="ACCOUNT")
    assert org.list_children(ParentId=OU, ChildType="ACCOUNT")["Children"]


def test_sts_unknown_access_key(model: Any) -> None:
    client = boto3.session.Session(aws_access_key_id="AKIANOTKNOWN00000000", aws_secret_access_key="x").client(
        "sts", region_name=REGION, endpoint_url=CLOSED_ENDPOINT)  # fmt: skip
    model.install(client)
    with pytest.raises(ClientError) as refused:
        client.get_caller_identity()
    assert code(refused) == "InvalidClientTokenId"


def test_sts_caller_identity_needs_no_permission(model: Any) -> None:
    with_probe(model)  # the probe role allows no sts action
    identity = assumed(model, "sts").get_caller_identity()
    assert identity["Account"] == DEV and f":assumed-role/{PROBE_ROLE}/" in identity["Arn"]


def test_iam_explicit_deny_beats_allow(model: Any) -> None:
    with_probe(model)
    cfn = assumed(model, "cloudformation")
    with pytest.raises(ClientError, match="not authorized to perform: cloudformation:ListStacks") as refused:
        cfn.list_stacks()
    assert code(refused) == "AccessDenied"
    with pytest.raises(ClientError) as missing:
        cfn.describe_stack_events(StackName="nope")  # allowed by cloudformation:*: the stack is what is missing
    assert code(missing) == "ValidationError"


def test_iam_conditions_are_not_evaluated(model: Any) -> None:
    with_probe(model)
    # AWS would deny this call (the Deny's condition holds for a session without MFA); the model ignores conditions
    [stack] = assumed(model, "cloudformation").describe_stacks(StackName=model.world.stacks.live(DEV)[0].name)["Stacks"]
    assert stack["StackStatus"] == "CREATE_COMPLETE"


def test_iam_action_names_of_s3_head_calls(model: Any) -> None:
    with_probe(model)
    s3 = assumed(model, "s3")
    with pytest.raises(ClientError) as absent:
        s3.head_object(Bucket=PROBE_BUCKET, Key="missing")  # s3:GetObject is allowed
    assert code(absent) == "404"
    with pytest.raises(ClientError) as refused:
        s3.head_bucket(Bucket=PROBE_BUCKET)  # needs s3:ListBucket, which the role lacks
    assert code(refused) == "AccessDenied" and "s3:ListBucket" in refused.value.response["Error"]["Message"]


def test_iam_resources_are_not_evaluated(cfn: Any, model: Any) -> None:
    """The reader role allows DescribeStacks only on stack/StackSet-rstudio-*; the model lets it read any stack."""
    cfn.create_stack_set(StackSetName="rstudio-bootstrap", PermissionModel="SERVICE_MANAGED",
                         TemplateBody=(ROOT / "templates" / "rstudio-bootstrap.yaml").read_text(encoding="utf-8"),
                         Capabilities=["CAPABILITY_NAMED_IAM"], AutoDeployment={"Enabled": False}, **AS_ADMIN)
    deploy(cfn, [DEV], "rstudio-bootstrap")
    new_set(cfn, "other-project")
    deploy(cfn, [DEV], "other-project")
    model.clock.sleep(60)
    reader = clients_for(model, REGION).reader(DEV, REGION)
    name = next(s.name for s in model.world.stacks.live(DEV) if s.stackset == "other-project")
    assert reader.describe_stacks(StackName=name)["Stacks"][0]["StackName"].startswith("StackSet-other-project-")


# --- the stack API in a target account ----------------------------------------------------------------------------


def test_stacks_deleted_listed_and_found_by_id_events_newest_first_no_echo_masked(cfn: Any, model: Any) -> None:
    cfn.create_stack_set(StackSetName="rstudio-bootstrap", PermissionModel="SERVICE_MANAGED",
                         TemplateBody=(ROOT / "templates" / "rstudio-bootstrap.yaml").read_text(encoding="utf-8"),
                         Capabilities=["CAPABILITY_NAMED_IAM"], AutoDeployment={"Enabled": False}, **AS_ADMIN)
    deploy(cfn, [DEV], "rstudio-bootstrap")
    new_set(cfn)
    deploy(cfn, [DEV])
    model.clock.sleep(60)
    reader = clients_for(model, REGION).reader(DEV, REGION)
    stack_id = instance(cfn, DEV)["StackId"]
    [live] = reader.describe_stacks(StackName=stack_id)["Stacks"]
    assert {p["ParameterKey"]: p["ParameterValue"] for p in live["Parameters"]} == {"Size": "small", "Token": "****"}
    undeploy(cfn, [DEV], retain=False)
    model.clock.sleep(60)
    listed = {s["StackId"]: s["StackStatus"] for s in reader.list_stacks()["StackSummaries"]}
    assert listed[stack_id] == "DELETE_COMPLETE"
    with pytest.raises(ClientError, match="does not exist"):
        reader.describe_stacks(StackName=live["StackName"])
    assert reader.describe_stacks(StackName=stack_id)["Stacks"][0]["StackStatus"] == "DELETE_COMPLETE"
    events = reader.describe_stack_events(StackName=stack_id)["StackEvents"]
    assert (events[0]["ResourceStatus"], events[-1]["ResourceStatus"]) == ("DELETE_COMPLETE", "CREATE_IN_PROGRESS")
    times = [e["Timestamp"] for e in events]
    assert times == sorted(times, reverse=True)


# --- S3, ECR, CodeBuild, SES --------------------------------------------------------------------------------------


def test_s3_bucket_names_are_global(model: Any) -> None:
    with_probe(model)
    s3 = clients_for(model, REGION).client("s3")
    config = {"LocationConstraint": REGION}
    s3.create_bucket(Bucket="rstudio-admin-bucket", CreateBucketConfiguration=config)
    with pytest.raises(s3.exceptions.BucketAlreadyOwnedByYou):
        s3.create_bucket(Bucket="rstudio-admin-bucket", CreateBucketConfiguration=config)
    with pytest.raises(s3.exceptions.BucketAlreadyExists):
        s3.create_bucket(Bucket=PROBE_BUCKET, CreateBucketConfiguration=config)  # DEV's stack owns it


@pytest.mark.parametrize(("region", "constraint"), [(REGION, None), (REGION, "us-west-2")])
def test_s3_location_constraint_must_match_the_region(model: Any, region: str, constraint: str | None) -> None:
    s3 = clients_for(model, region).client("s3")
    extra = {"CreateBucketConfiguration": {"LocationConstraint": constraint}} if constraint else {}
    with pytest.raises(ClientError) as refused:
        s3.create_bucket(Bucket="rstudio-misplaced", **extra)
    assert code(refused) == "IllegalLocationConstraintException"


def test_s3_us_east_1_takes_no_location_constraint(model: Any) -> None:
    s3 = clients_for(model, OTHER).client("s3")
    s3.create_bucket(Bucket="rstudio-virginia")
    with pytest.raises(ClientError) as refused:
        s3.create_bucket(Bucket="rstudio-virginia-2", CreateBucketConfiguration={"LocationConstraint": OTHER})
    assert code(refused) == "InvalidLocationConstraint"


def test_ecr_immutable_tags_and_lookups_name_what_is_missing(model: Any) -> None:
    with_probe(model)
    ecr = assumed(model, "ecr")
    with pytest.raises(ecr.exceptions.RepositoryNotFoundException):
        ecr.describe_images(repositoryName="nope")
    ecr.put_image(repositoryName=PROBE_REPOSITORY, imageManifest="{}", imageTag="v1")
    with pytest.raises(ecr.exceptions.ImageTagAlreadyExistsException):
        ecr.put_image(repositoryName=PROBE_REPOSITORY, imageManifest="{}", imageTag="v1")
    with pytest.raises(ecr.exceptions.ImageNotFoundException):
        ecr.describe_images(repositoryName=PROBE_REPOSITORY, imageIds=[{"imageTag": "v2"}])


def test_codebuild_builds_only_a_context_that_hashes_to_its_tag(model: Any) -> None:
    with_probe(model)
    s3, build, ecr = assumed(model, "s3"), assumed(model, "codebuild"), assumed(model, "ecr")
    files = {"Dockerfile": b"FROM scratch\n"}
    tag = context_tag(files)
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("Dockerfile", files["Dockerfile"])
    s3.put_object(Bucket=PROBE_BUCKET, Key=f"contexts/{PROBE_REPOSITORY}/{tag}.zip", Body=archive.getvalue())
    s3.put_object(Bucket=PROBE_BUCKET, Key=f"contexts/{PROBE_REPOSITORY}/wrong.zip", Body=archive.getvalue())

    def start(image_tag: str) -> str:
        variables = [{"name": "IMAGE_NAME", "value": PROBE_REPOSITORY}, {"name": "IMAGE_TAG", "value": image_tag}]
        return build.start_build(projectName=IMAGE_BUILD_PROJECT, environmentVariablesOverride=variables)["build"]["id"]

    good, bad, absent = start(tag), start("wrong"), start("never-uploaded")
    model.clock.sleep(600)
    status = {b["id"]: b["buildStatus"] for b in build.batch_get_builds(ids=[good, bad, absent])["builds"]}
    assert status == {good: "SUCCEEDED", bad: "FAILED", absent: "FAILED"}
    assert ecr.describe_images(repositoryName=PROBE_REPOSITORY, imageIds=[{"imageTag": tag}])["imageDetails"]
    with pytest.raises(ClientError) as refused:
        build.start_build(projectName=IMAGE_BUILD_PROJECT, buildspecOverride="version: 0.2")
    assert code(refused) == "AccessDeniedException"
    with pytest.raises(build.exceptions.ResourceNotFoundException):
        build.start_build(projectName="nope")


def test_ses_answers_only_for_identities_it_knows(cfg: Config) -> None:
    model = model_for(cfg, scenario(ses={cfg.accounts.admin: {"verified": ["ops@example.com"]}}))
    ses = clients_for(model, REGION).client("ses")
    answer = ses.get_identity_verification_attributes(Identities=["ops@example.com", "other@example.com"])
    statuses = {k: v["VerificationStatus"] for k, v in answer["VerificationAttributes"].items()}
    assert statuses == {"ops@example.com": "Success"}  # an identity never submitted is left out of the answer


def test_strict_failure_tolerance_lowers_the_concurrency(cfg: Config) -> None:
    """botocore model ConcurrencyMode: under STRICT_FAILURE_TOLERANCE at most FailureToleranceCount + 1 accounts at
    once, whatever MaxConcurrentCount asks for."""
    model = model_for(cfg, scenario(durations={"default": 60}))
    cfn = cfn_of(model)
    new_set(cfn)
    operation = deploy(cfn, [CENTRAL, NETWORK, DATA, DEV], OperationPreferences={
        "MaxConcurrentCount": 4, "FailureToleranceCount": 1, "ConcurrencyMode": "STRICT_FAILURE_TOLERANCE"})
    model.clock.sleep(60)
    assert op_status(cfn, operation) == "RUNNING"  # two batches of two, not one batch of four
    model.clock.sleep(60)
    assert op_status(cfn, operation) == "SUCCEEDED"


def test_ss_at_most_stack_instances_per_operation_run_at_once(cfg: Config) -> None:
    """MaxConcurrentPercentage 100 over four accounts, but a scenario that allows 2 instances per operation at once:
    two batches."""
    model = model_for(cfg, scenario(durations={"default": 60}, limits={"stack_instances_per_operation": 2}))
    cfn = cfn_of(model)
    new_set(cfn)
    operation = deploy(cfn, [CENTRAL, NETWORK, DATA, DEV], OperationPreferences={
        "MaxConcurrentPercentage": 100, "FailureTolerancePercentage": 100, "ConcurrencyMode": "SOFT_FAILURE_TOLERANCE"})
    model.clock.sleep(60)
    assert op_status(cfn, operation) == "RUNNING"
    model.clock.sleep(60)
    assert op_status(cfn, operation) == "SUCCEEDED"


# --- Auto Scaling: asg-protection, asg-api -------------------------------------------------------------------------

ASG_ROLE = "rstudio-probe-asg"
ASG_READER = f"""\
Resources:
  Role:
    Type: AWS::IAM::Role
    Properties:
      RoleName: {ASG_ROLE}
      AssumeRolePolicyDocument: {{Statement: [{{Effect: Allow, Principal: {{Service: lambda.amazonaws.com}},
                                  Action: 'sts:AssumeRole'}}]}}
      Policies:
        - PolicyName: probe
          PolicyDocument:
            Statement:
              - {{Effect: Allow, Action: ['autoscaling:DescribeAutoScalingGroups',
                                         'autoscaling:SetInstanceProtection'], Resource: '*'}}
"""


def group_stack(name: str, *, max_size: int = 4, protect: bool = True, termination: str = "ENABLED") -> str:
    """A group behind a capacity provider, two services on it and one on Fargate."""
    services = "".join(f"""
  {who}:
    Type: AWS::ECS::Service
    Properties:
      Cluster: !Ref Cluster
      CapacityProviderStrategy: [{{CapacityProvider: !Ref Provider, Weight: 1}}]
""" for who in ("AliceService", "BobService"))
    return f"""\
Resources:
  Cluster: {{Type: AWS::ECS::Cluster}}
  Group:
    Type: AWS::AutoScaling::AutoScalingGroup
    Properties: {{AutoScalingGroupName: {name}, MinSize: '0', MaxSize: '{max_size}',
                 NewInstancesProtectedFromScaleIn: {str(protect).lower()}}}
  Provider:
    Type: AWS::ECS::CapacityProvider
    Properties:
      AutoScalingGroupProvider: {{AutoScalingGroupArn: !Ref Group, ManagedTerminationProtection: {termination}}}
  ShinyService:
    Type: AWS::ECS::Service
    Properties: {{Cluster: !Ref Cluster, LaunchType: FARGATE}}
{services}"""


def autoscaling_of(model: Any) -> Any:
    """A real boto3 Auto Scaling client acting as a role of DEV that may describe groups and set protection."""
    assert model.world.engine.create("probe-asg-role", DEV, REGION, ASG_READER, {}).status == "CREATE_COMPLETE"
    return model.client_as(DEV, REGION, ASG_ROLE, "autoscaling")


def failures(stack: Any) -> list[tuple[str, str]]:
    return [(e.logical_id, e.reason) for e in stack.events
            if e.status == "DELETE_FAILED" and e.logical_id != stack.name]  # fmt: skip


def test_asg_protection_keeps_the_group_from_being_deleted_until_lifted(model: Any) -> None:
    autoscaling = autoscaling_of(model)
    engine = model.world.engine
    stack = engine.create("probe-asg", DEV, REGION, group_stack("rstudio-probe-group"), {})
    assert stack.status == "CREATE_COMPLETE"
    [group] = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=["rstudio-probe-group"])[
        "AutoScalingGroups"]  # fmt: skip
    # one instance per service on the capacity provider, none for the Fargate one
    assert [i["ProtectedFromScaleIn"] for i in group["Instances"]] == [True, True]
    assert group["NewInstancesProtectedFromScaleIn"] is True and group["DesiredCapacity"] == 2

    engine.delete(stack)
    assert stack.status == "DELETE_FAILED"
    assert failures(stack) == [("Group", "Could not scale to desired capacity because all remaining instances are "
                                         "protected from scale-in.")]  # fmt: skip
    assert set(stack.resources) == {"Group"}  # the services and the provider went first: nothing lifts it any more

    ids = [i["InstanceId"] for i in group["Instances"]]
    autoscaling.set_instance_protection(InstanceIds=ids, AutoScalingGroupName="rstudio-probe-group",
                                        ProtectedFromScaleIn=False)  # fmt: skip
    engine.delete(stack)
    assert stack.status == "DELETE_COMPLETE"
    assert autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=["rstudio-probe-group"])[
        "AutoScalingGroups"] == []  # fmt: skip


@pytest.mark.parametrize("protect, termination, protected", [(False, "DISABLED", False), (True, "DISABLED", True),
                                                             (False, "ENABLED", True)])  # fmt: skip
def test_asg_protection_comes_from_the_group_or_the_capacity_provider(model: Any, protect: bool, termination: str,
                                                                      protected: bool) -> None:  # fmt: skip
    autoscaling = autoscaling_of(model)
    engine = model.world.engine
    stack = engine.create("probe-asg", DEV, REGION, group_stack("g", max_size=1, protect=protect,
                                                                 termination=termination), {})  # fmt: skip
    [group] = autoscaling.describe_auto_scaling_groups()["AutoScalingGroups"]
    assert [i["ProtectedFromScaleIn"] for i in group["Instances"]] == [protected]  # MaxSize 1: both share one
    engine.delete(stack)
    assert stack.status == ("DELETE_FAILED" if protected else "DELETE_COMPLETE")


def test_asg_api_limits_and_pages(model: Any) -> None:
    autoscaling = autoscaling_of(model)
    for name in ("group-a", "group-b"):
        model.world.engine.create(f"probe-{name}", DEV, REGION, group_stack(name), {})
    first = autoscaling.describe_auto_scaling_groups(MaxRecords=1, IncludeInstances=False)
    assert [g["AutoScalingGroupName"] for g in first["AutoScalingGroups"]] == ["group-a"]
    assert "Instances" not in first["AutoScalingGroups"][0]
    second = autoscaling.describe_auto_scaling_groups(MaxRecords=1, NextToken=first["NextToken"])
    assert [g["AutoScalingGroupName"] for g in second["AutoScalingGroups"]] == ["group-b"]
    assert "NextToken" not in second and len(second["AutoScalingGroups"][0]["Instances"]) == 2
    assert second["AutoScalingGroups"][0]["AutoScalingGroupARN"].endswith(":autoScalingGroupName/group-b")
    with pytest.raises(ClientError) as too_many_records:
        autoscaling.describe_auto_scaling_groups(MaxRecords=101)
    assert code(too_many_records) == "ValidationError"

    ids = [i["InstanceId"] for i in second["AutoScalingGroups"][0]["Instances"]]
    with pytest.raises(autoscaling.exceptions.LimitExceededFault):
        autoscaling.set_instance_protection(InstanceIds=[f"i-{n:017x}" for n in range(51)],
                                            AutoScalingGroupName="group-b", ProtectedFromScaleIn=False)  # fmt: skip
    with pytest.raises(ClientError, match="not found") as unknown:
        autoscaling.set_instance_protection(InstanceIds=ids, AutoScalingGroupName="nope", ProtectedFromScaleIn=False)
    assert code(unknown) == "ValidationError"
    with pytest.raises(ClientError, match="is not part of Auto Scaling group group-a") as foreign:
        autoscaling.set_instance_protection(InstanceIds=ids, AutoScalingGroupName="group-a", ProtectedFromScaleIn=False)
    assert code(foreign) == "ValidationError"
    [still] = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=["group-b"])["AutoScalingGroups"]
    assert all(i["ProtectedFromScaleIn"] for i in still["Instances"])  # a refused call changes nothing
