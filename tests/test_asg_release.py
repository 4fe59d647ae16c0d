"""The custom resource that lifts the EC2 capacity group's scale-in protection before CloudFormation deletes the group
(issue 11): the handler against a stubbed Auto Scaling client and a fake ResponseURL, and the template part (least
privilege, inline code, the deletion order DependsOn and Ref give)."""

from __future__ import annotations

import urllib.request
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from generator.instance.asg_release import HANDLER
from generator.instance.capacity import add_ec2_capacity
from generator.stacks import instance as instance_stack
from tests.instance_parts import IMAGE_TAGS, groundwork
from tests.lambdas import Responses, load_handler

REGION = "eu-west-1"
GROUP = "StackSet-rstudio-prod-ContainerInstanceGroup-ABC123"

handler_module = load_handler(HANDLER, "asg_release_handler")


# --------------------------------------------------------------------------------------------------------------------
# Template


def capacity_resources(cfg: Any) -> dict[str, Any]:
    g = groundwork(cfg, "prod")
    add_ec2_capacity(g.template, cfg, "prod", g.network, g.cluster, g.key)
    return g.template.to_dict()["Resources"]


def statements(resources: dict[str, Any]) -> dict[str, dict[str, Any]]:
    role = resources["AsgReleaseRole"]["Properties"]
    return {s["Sid"]: s for policy in role["Policies"] for s in policy["PolicyDocument"]["Statement"]}


def test_role_may_lift_protection_on_its_group_only_and_describe_groups(cfg):
    found = statements(capacity_resources(cfg))
    assert set(found) == {"LiftProtectionOfTheGroup", "FindTheGroupsInstances", "WriteOwnLogs"}
    lift = found["LiftProtectionOfTheGroup"]
    assert lift["Action"] == ["autoscaling:SetInstanceProtection"]
    assert lift["Resource"] == [{"Fn::Sub": [
        "arn:${AWS::Partition}:autoscaling:${AWS::Region}:${AWS::AccountId}:autoScalingGroup:*:"
        "autoScalingGroupName/${Group}", {"Group": {"Ref": "ContainerInstanceGroup"}}]}]  # fmt: skip
    # DescribeAutoScalingGroups has no resource-level permissions
    assert found["FindTheGroupsInstances"]["Action"] == ["autoscaling:DescribeAutoScalingGroups"]
    assert found["FindTheGroupsInstances"]["Resource"] == ["*"]
    assert found["WriteOwnLogs"]["Action"] == ["logs:CreateLogStream", "logs:PutLogEvents"]
    assert found["WriteOwnLogs"]["Resource"] == [{"Fn::Sub": ["${Group}:*", {"Group": {"Fn::GetAtt": [
        "AsgReleaseLogGroup", "Arn"]}}]}]  # fmt: skip
    assert all(s["Effect"] == "Allow" and "Condition" not in s for s in found.values())
    trust = capacity_resources(cfg)["AsgReleaseRole"]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert [(s["Principal"], s["Action"]) for s in trust] == [({"Service": "lambda.amazonaws.com"}, ["sts:AssumeRole"])]


def test_function_runs_the_tested_handler_and_logs_to_its_own_encrypted_group(cfg):
    resources = capacity_resources(cfg)
    function = resources["AsgReleaseFunction"]["Properties"]
    assert function["Code"]["ZipFile"] == HANDLER.read_text(encoding="utf-8")
    assert (function["Handler"], function["Runtime"], function["Role"]) == (
        "index.handler", "python3.12", {"Fn::GetAtt": ["AsgReleaseRole", "Arn"]})  # fmt: skip
    assert function["LoggingConfig"]["LogGroup"] == {"Ref": "AsgReleaseLogGroup"}
    group = resources["AsgReleaseLogGroup"]
    assert group["Properties"]["KmsKeyId"] == {"Ref": "InstanceKeyArn"}
    assert group["DeletionPolicy"] == "RetainExceptOnCreate"
    custom = resources["AsgRelease"]
    assert custom["Type"] == "Custom::AsgRelease"
    assert custom["Properties"]["ServiceToken"] == {"Fn::GetAtt": ["AsgReleaseFunction", "Arn"]}
    assert 0 < custom["Properties"]["ServiceTimeout"] <= 3600  # a lost answer fails the deletion in minutes


def test_handler_fits_inline_code():
    assert len(HANDLER.read_bytes()) < 4096


def test_it_is_deleted_after_the_rstudio_services_and_before_the_group(cfg):
    """CloudFormation deletes in reverse dependency order: the services depend on it, it refers to the group."""
    resources = instance_stack.build(cfg, "prod", IMAGE_TAGS).to_dict()["Resources"]
    assert resources["AsgRelease"]["Properties"]["AutoScalingGroupName"] == {"Ref": "ContainerInstanceGroup"}
    on_ec2 = {name: r for name, r in resources.items() if r["Type"] == "AWS::ECS::Service"
              and "CapacityProviderStrategy" in r["Properties"]}  # fmt: skip
    assert sorted(on_ec2) == ["AliceRStudioService", "BobRStudioService", "ChenRStudioService"]
    assert all("AsgRelease" in r["DependsOn"] for r in on_ec2.values())


def test_an_instance_on_fargate_has_no_capacity_group_to_release(cfg):
    resources = instance_stack.build(cfg, "dev", IMAGE_TAGS).to_dict()["Resources"]
    kinds = {r["Type"] for r in resources.values()}
    assert not kinds & {"Custom::AsgRelease", "AWS::AutoScaling::AutoScalingGroup"}


# --------------------------------------------------------------------------------------------------------------------
# Handler


@pytest.fixture
def responses(monkeypatch) -> Responses:
    fake = Responses()
    monkeypatch.setattr(urllib.request, "urlopen", fake)
    return fake


@pytest.fixture
def autoscaling(monkeypatch):
    """A real boto3 Auto Scaling client whose answers a test queues (botocore checks every call's parameters)."""
    client = boto3.client("autoscaling", region_name=REGION, aws_access_key_id="testing",
                          aws_secret_access_key="testing")  # fmt: skip
    monkeypatch.setattr(handler_module.boto3, "client", lambda service, **_: {"autoscaling": client}[service])
    with Stubber(client) as stub:
        yield stub
        stub.assert_no_pending_responses()


@pytest.fixture
def no_aws(monkeypatch):
    def refuse(service: str, **_: Any) -> Any:
        raise AssertionError(f"Create and Update call no AWS API, yet {service} was asked for")

    monkeypatch.setattr(handler_module.boto3, "client", refuse)


def event(kind: str, group: str = GROUP, **extra: Any) -> dict[str, Any]:
    result = {
        "RequestType": kind, "ResponseURL": "https://cloudformation-custom-resource-response.s3.amazonaws.com/x?sig=1",
        "StackId": "arn:aws:cloudformation:eu-west-1:666666666666:stack/rstudio-prod/1", "RequestId": f"{kind}-1",
        "LogicalResourceId": "AsgRelease", "ResourceType": "Custom::AsgRelease",
        "ResourceProperties": {"ServiceToken": "arn:aws:lambda:eu-west-1:666666666666:function:f",
                               "AutoScalingGroupName": group},
    }  # fmt: skip
    if kind != "Create":
        result["PhysicalResourceId"] = f"asg-release-{GROUP}"
    return {**result, **extra}


def instance(number: int, protected: bool = True) -> dict[str, Any]:
    return {"InstanceId": f"i-{number:017x}", "AvailabilityZone": "eu-west-1a", "LifecycleState": "InService",
            "HealthStatus": "Healthy", "ProtectedFromScaleIn": protected}  # fmt: skip


def group_page(instances: list[dict[str, Any]], token: str | None = None) -> dict[str, Any]:
    page: dict[str, Any] = {"AutoScalingGroups": [{
        "AutoScalingGroupName": GROUP, "MinSize": 0, "MaxSize": 200, "DesiredCapacity": len(instances),
        "DefaultCooldown": 300, "AvailabilityZones": ["eu-west-1a"], "HealthCheckType": "EC2",
        "CreatedTime": "2026-01-01T00:00:00Z", "Instances": instances}]}  # fmt: skip
    if token:
        page["NextToken"] = token
    return page


def test_delete_lifts_the_protection_of_every_protected_instance_in_batches_of_50(autoscaling, responses):
    first, second = [instance(n) for n in range(70)], [instance(n) for n in range(70, 120)] + [instance(999, False)]
    autoscaling.add_response("describe_auto_scaling_groups", group_page(first, "page-2"),
                             {"AutoScalingGroupNames": [GROUP]})  # fmt: skip
    autoscaling.add_response("describe_auto_scaling_groups", group_page(second),
                             {"AutoScalingGroupNames": [GROUP], "NextToken": "page-2"})  # fmt: skip
    ids = [i["InstanceId"] for i in first + second[:-1]]
    for batch in (ids[:50], ids[50:100], ids[100:]):
        autoscaling.add_response("set_instance_protection", {}, {"InstanceIds": batch, "AutoScalingGroupName": GROUP,
                                                                 "ProtectedFromScaleIn": False})  # fmt: skip
    handler_module.handler(event("Delete"), None)
    [answer] = responses.sent
    assert answer["Status"] == "SUCCESS"
    assert answer["Reason"] == f"lifted scale-in protection from 120 instance(s) of {GROUP}"
    assert (answer["PhysicalResourceId"], answer["RequestId"], answer["LogicalResourceId"]) == (
        f"asg-release-{GROUP}", "Delete-1", "AsgRelease")  # fmt: skip
    [request] = responses.requests
    assert request.get_method() == "PUT" and request.get_header("Content-type") == ""


def test_delete_of_a_group_that_is_gone_already_succeeds(autoscaling, responses):
    # a retried deletion, or the rollback of a create that never made the group
    autoscaling.add_response("describe_auto_scaling_groups", {"AutoScalingGroups": []},
                             {"AutoScalingGroupNames": [GROUP]})  # fmt: skip
    handler_module.handler(event("Delete"), None)
    assert [(r["Status"], r["Reason"]) for r in responses.sent] == [
        ("SUCCESS", f"lifted scale-in protection from 0 instance(s) of {GROUP}")]  # fmt: skip


@pytest.mark.parametrize("failing", ["describe_auto_scaling_groups", "set_instance_protection"])
def test_an_aws_error_answers_failed_with_its_code_and_message(autoscaling, responses, failing):
    if failing == "set_instance_protection":
        autoscaling.add_response("describe_auto_scaling_groups", group_page([instance(1)]),
                                 {"AutoScalingGroupNames": [GROUP]})  # fmt: skip
    autoscaling.add_client_error(failing, "AccessDenied", "not authorized to perform: autoscaling:X")
    handler_module.handler(event("Delete"), None)
    assert [(r["Status"], r["Reason"], r["PhysicalResourceId"]) for r in responses.sent] == [
        ("FAILED", "AccessDenied: not authorized to perform: autoscaling:X", f"asg-release-{GROUP}")]  # fmt: skip


def test_a_malformed_event_is_answered_failed_instead_of_raising(monkeypatch, responses):
    client = boto3.client("autoscaling", region_name=REGION, aws_access_key_id="testing",
                          aws_secret_access_key="testing")  # fmt: skip
    monkeypatch.setattr(handler_module.boto3, "client", lambda service, **_: client)
    handler_module.handler(event("Delete", ResourceProperties={}), None)  # no group: botocore refuses the name ""
    [answer] = responses.sent
    assert answer["Status"] == "FAILED" and answer["Reason"].startswith("ParamValidationError: ")


@pytest.mark.parametrize("kind", ["Create", "Update"])
def test_create_and_update_answer_success_without_calling_aws(no_aws, responses, kind):
    handler_module.handler(event(kind), None)
    assert [(r["Status"], r["PhysicalResourceId"]) for r in responses.sent] == [("SUCCESS", f"asg-release-{GROUP}")]


def test_an_update_to_another_group_reads_as_a_replacement(no_aws, responses):
    # CloudFormation then sends the old id a Delete with the old group, which lifts that group's protection
    handler_module.handler(event("Update", "another-group"), None)
    assert [r["PhysicalResourceId"] for r in responses.sent] == ["asg-release-another-group"]


def test_an_unreachable_response_url_is_retried_and_never_raises(no_aws, monkeypatch):
    flaky = Responses(fail=2)
    monkeypatch.setattr(urllib.request, "urlopen", flaky)
    handler_module.handler(event("Create"), None)
    assert len(flaky.requests) == 3 and [r["Status"] for r in flaky.sent] == ["SUCCESS"]
    dead = Responses(fail=99)
    monkeypatch.setattr(urllib.request, "urlopen", dead)
    handler_module.handler(event("Create"), None)
    assert len(dead.requests) == 3
