"""DataSync: locations on exactly the data bucket prefixes and the sync access points, deliberate options, task logs
the account's one log resource policy (the rstudio-logs StackSet) covers, and the trigger Lambda wired to the
forwarded instant/ events with least privilege."""

from __future__ import annotations

import json
from fnmatch import fnmatchcase
from typing import Any

import awacs.elasticfilesystem as efs
import pytest
from troposphere import GetAtt, Ref
from troposphere.ec2 import SecurityGroup
from troposphere.efs import AccessPoint, MountTarget
from troposphere.iam import PolicyType, Role

from generator import naming
from generator.iam import Allow, Statement, document, service_trust
from generator.instance.datasync import HANDLER, DataSync, add_datasync
from generator.instance.storage import Storage, TaskRoles, add_storage
from generator.stacks import instance as instance_module
from generator.stacks import logs
from stacksets.config import parse_config
from tests.instance_parts import Groundwork, groundwork, stack_log_group_name


def stand_in_storage(g: Groundwork) -> Storage:
    """What generator/instance/storage.py provides, reduced to what DataSync refers to."""
    t = g.template
    fs = g.stored.file_system
    groups = [t.add_resource(SecurityGroup(f"StandIn{n}Group", GroupDescription=n, VpcId=Ref(g.network.vpc)))
              for n in ("Nfs", "DataSync")]  # fmt: skip
    mounts = [t.add_resource(MountTarget(f"StandInMount{subnet.title}", FileSystemId=fs.id, SubnetId=Ref(subnet),
                                         SecurityGroups=[GetAtt(groups[0], "GroupId")]))
              for subnet in g.network.private_subnets]  # fmt: skip
    points = {name: t.add_resource(AccessPoint(naming.logical_id("StandIn", name), FileSystemId=fs.id))
              for name in ("hourly_sync", "instant_upload")}  # fmt: skip
    role = t.add_resource(Role("StandInEfsRole", AssumeRolePolicyDocument=service_trust("datasync.amazonaws.com")))
    grant = t.add_resource(PolicyType("StandInEfsGrant", PolicyName="efs", Roles=[Ref(role)], PolicyDocument=document(
        Statement(Effect=Allow, Action=[efs.ClientMount], Resource=[fs.arn]))))  # fmt: skip
    return Storage(fs, groups[0], groups[1], points, role, {"datasync": grant}, mounts)


def build(cfg, instance: str) -> tuple[DataSync, dict[str, Any]]:
    g = groundwork(cfg, instance)
    s3_role = instance_module.add_datasync_role(g.template, cfg, instance)
    parts = add_datasync(g.template, cfg, instance, g.network, stand_in_storage(g), g.key, s3_role)
    return parts, g.template.to_dict()["Resources"]


def props(resources: dict[str, Any], name: str) -> dict[str, Any]:
    return resources[name]["Properties"]


def of_type(resources: dict[str, Any], kind: str) -> dict[str, Any]:
    return {name: r["Properties"] for name, r in resources.items() if r["Type"] == kind}


def statements(policy: dict[str, Any]) -> list[dict[str, Any]]:
    return policy["PolicyDocument"]["Statement"]


@pytest.mark.parametrize("instance", ["dev", "prod"])
def test_s3_locations_are_exactly_the_data_bucket_prefixes_read_through_the_named_role(cfg, instance):
    _, resources = build(cfg, instance)
    bucket = naming.upload_bucket_name(instance, cfg.accounts.data, cfg.default_region)
    locations = of_type(resources, "AWS::DataSync::LocationS3")
    assert {p["Subdirectory"] for p in locations.values()} == {"/hourly/", "/instant/"}
    for location in locations.values():
        assert location["S3BucketArn"] == {"Fn::Sub": f"arn:${{AWS::Partition}}:s3:::{bucket}"}
        # The role the data account's bucket and key policies grant by name.
        assert location["S3Config"] == {"BucketAccessRoleArn": {"Fn::GetAtt": ["DataSyncRole", "Arn"]}}
    assert props(resources, "DataSyncRole")["RoleName"] == naming.role_name(instance, naming.DATASYNC_ROLE)


def test_upload_bucket_is_in_the_default_region_even_when_the_instance_is_not(example_data):
    example_data["instances"]["prod"]["region"] = "eu-central-1"
    cfg = parse_config(example_data)
    _, resources = build(cfg, "prod")
    location = props(resources, "DataSyncHourlyS3Location")
    assert location["S3BucketArn"]["Fn::Sub"].endswith(f"-uploads-{cfg.accounts.data}-eu-west-1")


def test_efs_locations_mount_the_sync_access_points_over_tls_with_the_efs_role(cfg):
    _, resources = build(cfg, "prod")
    expected = {"DataSyncHourlyEfsLocation": "StandInHourlySync", "DataSyncInstantEfsLocation": "StandInInstantUpload"}
    assert set(of_type(resources, "AWS::DataSync::LocationEFS")) == set(expected)
    for name, access_point in expected.items():
        location = props(resources, name)
        assert location["AccessPointArn"] == {"Fn::GetAtt": [access_point, "Arn"]}
        assert location["EfsFilesystemArn"] == g_file_system_arn()
        assert location["InTransitEncryption"] == "TLS1_2"
        assert location["FileSystemAccessRoleArn"] == {"Fn::GetAtt": ["StandInEfsRole", "Arn"]}
        ec2 = location["Ec2Config"]
        assert ec2["SubnetArn"]["Fn::Sub"][1] == {"Subnet": {"Ref": "PrivateSubnetA"}}
        assert ec2["SecurityGroupArns"][0]["Fn::Sub"][1] == {"Group": {"Fn::GetAtt": ["StandInDataSyncGroup",
                                                                                       "GroupId"]}}  # fmt: skip
        # Created once a mount target exists in the subnet's AZ and the role may mount.
        assert resources[name]["DependsOn"] == [f"StandInMountPrivateSubnet{z}" for z in "ABC"] + ["StandInEfsGrant"]


def test_tasks_pair_each_prefix_with_its_access_point_and_only_hourly_is_scheduled(cfg):
    _, resources = build(cfg, "prod")
    tasks = of_type(resources, "AWS::DataSync::Task")
    assert set(tasks) == {"DataSyncHourlyTask", "DataSyncInstantTask"}
    for prefix in ("Hourly", "Instant"):
        task = tasks[f"DataSync{prefix}Task"]
        assert task["SourceLocationArn"] == {"Ref": f"DataSync{prefix}S3Location"}
        assert task["DestinationLocationArn"] == {"Ref": f"DataSync{prefix}EfsLocation"}
        assert task["CloudWatchLogGroupArn"] == {"Fn::GetAtt": ["DataSyncLogGroup", "Arn"]}
        # The log resource policy is the rstudio-logs StackSet's, deployed before the instance: nothing to wait for.
        assert "DependsOn" not in resources[f"DataSync{prefix}Task"]
    assert tasks["DataSyncHourlyTask"]["Schedule"] == {"ScheduleExpression": "cron(15 * * * ? *)", "Status": "ENABLED"}
    assert "Schedule" not in tasks["DataSyncInstantTask"]


def test_schedule_comes_from_config(cfg):
    _, resources = build(cfg, "dev")
    assert props(resources, "DataSyncHourlyTask")["Schedule"]["ScheduleExpression"] == "rate(1 hour)"


def test_options_never_delete_user_files_verify_queue_and_log_each_transfer(cfg):
    _, resources = build(cfg, "dev")
    for task in of_type(resources, "AWS::DataSync::Task").values():
        assert task["Options"] == {
            "OverwriteMode": "ALWAYS", "PreserveDeletedFiles": "PRESERVE", "TransferMode": "CHANGED",
            "VerifyMode": "ONLY_FILES_TRANSFERRED", "TaskQueueing": "ENABLED", "LogLevel": "TRANSFER",
            "PosixPermissions": "PRESERVE", "Uid": "INT_VALUE", "Gid": "INT_VALUE",
        }  # fmt: skip


def test_task_logs_are_encrypted_retained_and_writable_only_by_this_accounts_datasync(cfg):
    _, resources = build(cfg, "prod")
    group = resources["DataSyncLogGroup"]
    assert group["DeletionPolicy"] == "RetainExceptOnCreate"
    assert group["UpdateReplacePolicy"] == "Retain"
    assert group["Properties"]["LogGroupName"] == stack_log_group_name("/rstudio/prod/datasync")
    assert group["Properties"]["KmsKeyId"] == {"Ref": "InstanceKeyArn"}
    assert group["Properties"]["RetentionInDays"] == 365
    # DataSync writes under the account's one resource policy, in the rstudio-logs StackSet, not one per instance.
    assert not of_type(resources, "AWS::Logs::ResourcePolicy")
    policy = props(logs.build().to_dict()["Resources"], "DataSyncLogResourcePolicy")
    [statement] = json.loads(policy["PolicyDocument"]["Fn::Sub"])["Statement"]
    assert statement["Principal"] == {"Service": "datasync.amazonaws.com"}
    assert sorted(statement["Action"]) == ["logs:CreateLogStream", "logs:PutLogEvents"]
    groups = "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:"
    assert statement["Resource"] == [f"{groups}/rstudio/*/datasync/*"]
    assert statement["Condition"] == {
        "StringEquals": {"aws:SourceAccount": "${AWS::AccountId}"},
        "ArnLike": {"aws:SourceArn": "arn:${AWS::Partition}:datasync:${AWS::Region}:${AWS::AccountId}:task/*"},
    }
    assert policy["PolicyName"] == "rstudio-datasync-task-logs"  # one per account and Region, for every instance
    # The pattern covers the streams of every instance's task log group (named after its stack id), not the
    # trigger Lambda's group.
    stack_id = "0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d"
    [pattern] = statement["Resource"]
    assert fnmatchcase(f"{groups}/rstudio/prod/datasync/{stack_id}:log-stream:exec-0123", pattern)
    assert not fnmatchcase(f"{groups}/rstudio/prod/datasync-trigger/{stack_id}:log-stream:x", pattern)


def test_rule_matches_only_the_data_accounts_instant_uploads_of_this_instance(cfg):
    _, resources = build(cfg, "prod")
    rule = props(resources, "DataSyncInstantRule")
    assert "EventBusName" not in rule  # the default bus, where the data account forwards to
    assert rule["EventPattern"] == {
        "source": ["aws.s3"], "detail-type": ["Object Created"], "account": [cfg.accounts.data],
        "detail": {"bucket": {"name": [naming.upload_bucket_name("prod", cfg.accounts.data, "eu-west-1")]},
                   "object": {"key": [{"prefix": "instant/"}]}},
    }  # fmt: skip
    [target] = rule["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": ["DataSyncTriggerFunction", "Arn"]}
    assert target["RetryPolicy"] == {"MaximumRetryAttempts": 20, "MaximumEventAgeInSeconds": 3600}
    assert target["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": ["DataSyncTriggerDeadLetterQueue", "Arn"]}}


def test_only_the_rule_may_invoke_the_function_and_feed_the_dead_letter_queue(cfg):
    _, resources = build(cfg, "dev")
    permission = props(resources, "DataSyncTriggerPermission")
    assert permission["Principal"] == "events.amazonaws.com"
    assert permission["SourceArn"] == {"Fn::GetAtt": ["DataSyncInstantRule", "Arn"]}
    assert permission["FunctionName"] == {"Ref": "DataSyncTriggerFunction"}
    queue = props(resources, "DataSyncTriggerDeadLetterQueue")
    assert queue["KmsMasterKeyId"] == {"Ref": "InstanceKeyArn"}
    [sender] = statements(props(resources, "DataSyncTriggerDeadLetterQueuePolicy"))
    assert sender["Principal"] == {"Service": "events.amazonaws.com"}
    assert sender["Action"] == ["sqs:SendMessage"]
    assert sender["Condition"] == {"ArnEquals": {"aws:SourceArn": {"Fn::GetAtt": ["DataSyncInstantRule", "Arn"]}}}


def test_function_runs_the_handler_file_with_its_settings(cfg):
    _, resources = build(cfg, "prod")
    function = props(resources, "DataSyncTriggerFunction")
    assert function["Code"]["ZipFile"] == HANDLER.read_text(encoding="utf-8")
    assert len(function["Code"]["ZipFile"].encode()) < 4096
    assert (function["Handler"], function["Runtime"], function["Architectures"]) == ("index.handler", "python3.12",
                                                                                     ["arm64"])  # fmt: skip
    assert (function["Timeout"], function["MemorySize"]) == (60, 128)
    assert "ReservedConcurrentExecutions" not in function  # a fresh account (quota 10) refuses any reservation
    assert function["KmsKeyArn"] == {"Ref": "InstanceKeyArn"}
    assert function["Environment"]["Variables"] == {
        "INSTANT_TASK_ARN": {"Ref": "DataSyncInstantTask"}, "EXPECTED_ACCOUNT": cfg.accounts.data,
        "EXPECTED_BUCKET": naming.upload_bucket_name("prod", cfg.accounts.data, "eu-west-1"), "PREFIX": "instant/",
    }  # fmt: skip
    assert function["DeadLetterConfig"] == {"TargetArn": {"Fn::GetAtt": ["DataSyncTriggerDeadLetterQueue", "Arn"]}}
    invoke = props(resources, "DataSyncTriggerInvokeConfig")
    assert (invoke["MaximumRetryAttempts"], invoke["MaximumEventAgeInSeconds"]) == (2, 3600)


def test_function_logs_to_its_own_encrypted_retained_group(cfg):
    _, resources = build(cfg, "dev")
    function = props(resources, "DataSyncTriggerFunction")
    assert function["FunctionName"] == "rstudio-dev-datasync-trigger"
    assert function["LoggingConfig"] == {"LogGroup": {"Ref": "DataSyncTriggerLogGroup"}}
    group = resources["DataSyncTriggerLogGroup"]
    assert group["DeletionPolicy"] == "RetainExceptOnCreate"
    assert group["UpdateReplacePolicy"] == "Retain"
    assert group["Properties"] == {"LogGroupName": stack_log_group_name("/rstudio/dev/datasync-trigger"),
                                   "RetentionInDays": 14, "KmsKeyId": {"Ref": "InstanceKeyArn"}}  # fmt: skip


def test_function_role_starts_only_the_instant_task(cfg):
    _, resources = build(cfg, "dev")
    [policy] = props(resources, "DataSyncTriggerRole")["Policies"]
    by_sid = {s["Sid"]: s for s in statements(policy)}
    assert set(by_sid) == {"StartInstantTask", "WriteOwnLogs", "DeadLetters", "InstanceKey"}
    assert by_sid["StartInstantTask"]["Action"] == ["datasync:StartTaskExecution"]
    assert by_sid["StartInstantTask"]["Resource"] == [{"Ref": "DataSyncInstantTask"}]
    # Its own group only: the name carries the stack id, so the role names the group by its ARN.
    assert by_sid["WriteOwnLogs"]["Resource"] == [
        {"Fn::Sub": ["${Group}:*", {"Group": {"Fn::GetAtt": ["DataSyncTriggerLogGroup", "Arn"]}}]}]
    assert by_sid["DeadLetters"]["Resource"] == [{"Fn::GetAtt": ["DataSyncTriggerDeadLetterQueue", "Arn"]}]
    assert by_sid["InstanceKey"]["Resource"] == [{"Ref": "InstanceKeyArn"}]
    actions = [a for s in by_sid.values() for a in s["Action"]]
    assert not any(a.endswith("*") or a.startswith("ec2:") for a in actions)


def test_handler_over_the_inline_limit_fails_the_build(cfg, monkeypatch, tmp_path):
    big = tmp_path / "handler.py"
    big.write_text("#" * 4096)
    monkeypatch.setattr("generator.instance.datasync.HANDLER", big)
    with pytest.raises(ValueError, match="4096"):
        build(cfg, "dev")


def test_with_the_real_storage_the_locations_use_its_sync_points_role_and_group(cfg):
    g = groundwork(cfg, "prod")
    shiny_role = g.template.add_resource(Role("StandInShinyTaskRole", AssumeRolePolicyDocument=document()))
    storage = add_storage(g.template, cfg, "prod", g.network, g.groups, g.stored.file_system,
                          TaskRoles(g.rstudio_task_roles, shiny_role))  # fmt: skip
    s3_role = instance_module.add_datasync_role(g.template, cfg, "prod")
    add_datasync(g.template, cfg, "prod", g.network, storage, g.key, s3_role)
    resources = g.template.to_dict()["Resources"]
    for prefix, key in (("Hourly", "hourly_sync"), ("Instant", "instant_upload")):
        location = props(resources, f"DataSync{prefix}EfsLocation")
        assert location["AccessPointArn"] == {"Fn::GetAtt": [storage.access_points[key].title, "Arn"]}
        assert location["FileSystemAccessRoleArn"] == {"Fn::GetAtt": [storage.datasync_role.title, "Arn"]}
        group = location["Ec2Config"]["SecurityGroupArns"][0]["Fn::Sub"][1]["Group"]
        assert group == {"Fn::GetAtt": [storage.datasync_security_group.title, "GroupId"]}


def g_file_system_arn() -> dict[str, Any]:
    """The kept file system's ARN as the compute stack builds it from its FileSystemId parameter."""
    return {"Fn::Sub": ["arn:${AWS::Partition}:elasticfilesystem:${AWS::Region}:${AWS::AccountId}:file-system/${Id}",
                        {"Id": {"Ref": "FileSystemId"}}]}
