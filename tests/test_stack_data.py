"""The data account templates (rstudio-data, rstudio-<instance>-data).

Encryption, the cross-account grants and their exact principals, forwarding, SFTP.
"""

from __future__ import annotations

from typing import Any

import pytest

from generator.render import render
from generator.stacks import data, instance_data
from stacksets.config import Config, parse_config
from stacksets.limits import TEMPLATE_BODY_BYTES
from stacksets.template_checks import check_template

DATA_ACCOUNT = "444444444444"
ACCOUNTS = {"dev": "555555555555", "prod": "666666666666"}
INSTANCE_IDS = {"dev": "Dev", "prod": "Prod"}
STATEFUL = {"AWS::S3::Bucket", "AWS::KMS::Key", "AWS::Logs::LogGroup", "AWS::Glue::Database"}


def build_all(cfg: Config) -> dict[str, Any]:
    """Resources and outputs of the account-wide template and every instance's data template, merged."""
    templates = [data.build(cfg)] + [instance_data.build(cfg, name) for name in sorted(cfg.instances)]
    merged: dict[str, Any] = {"Resources": {}, "Outputs": {}}
    for template in templates:
        as_dict = template.to_dict()
        for section in merged:
            assert not set(merged[section]) & set(as_dict.get(section, {})), "logical ids must not clash"
            merged[section].update(as_dict.get(section, {}))
    return merged


@pytest.fixture(scope="module")
def resources(cfg: Config) -> dict[str, Any]:
    return build_all(cfg)["Resources"]


def of_type(resources: dict[str, Any], kind: str) -> dict[str, Any]:
    return {name: resource for name, resource in resources.items() if resource["Type"] == kind}


def statement(document: dict[str, Any], sid: str) -> dict[str, Any]:
    [found] = [s for s in document["Statement"] if s.get("Sid") == sid]
    return found


def sub(text: str) -> dict[str, str]:
    return {"Fn::Sub": text}


def arn_of(logical_id: str) -> dict[str, Any]:
    return {"Fn::GetAtt": [logical_id, "Arn"]}


def objects_of(logical_id: str, key: str = "*") -> dict[str, str]:
    return sub(f"${{{logical_id}.Arn}}/{key}")


def role_principal(account: str) -> dict[str, Any]:
    return {"AWS": sub(f"arn:${{AWS::Partition}}:iam::{account}:root")}


def principal_arn(account: str, role: str) -> dict[str, Any]:
    return {"ArnEquals": {"aws:PrincipalArn": sub(f"arn:${{AWS::Partition}}:iam::{account}:role/{role}")}}


def with_data(example_data: dict[str, Any], **instances: dict[str, Any]) -> Config:
    example_data["instances"].update(instances)
    return parse_config(example_data)


@pytest.mark.parametrize("instance", ["dev", "prod"])
@pytest.mark.parametrize("bucket", ["UploadBucket", "AthenaResultsBucket"])
def test_instance_buckets_are_encrypted_with_the_instance_key(resources, instance, bucket):
    properties = resources[INSTANCE_IDS[instance] + bucket]["Properties"]
    [rule] = properties["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["BucketKeyEnabled"] is True
    assert rule["ServerSideEncryptionByDefault"] == {
        "SSEAlgorithm": "aws:kms",
        "KMSMasterKeyID": {"Fn::GetAtt": [INSTANCE_IDS[instance] + "DataKey", "Arn"]},
    }
    assert properties["NotificationConfiguration"] == {"EventBridgeConfiguration": {"EventBridgeEnabled": True}}
    log_bucket = f"rstudio-access-logs-{DATA_ACCOUNT}-eu-west-1"
    assert properties["LoggingConfiguration"]["DestinationBucketName"] == log_bucket


def test_every_bucket_is_private_versioned_and_acl_free(resources):
    buckets = of_type(resources, "AWS::S3::Bucket")
    assert len(buckets) == 5  # two per instance and the shared access-log bucket
    for bucket in buckets.values():
        properties = bucket["Properties"]
        assert properties["PublicAccessBlockConfiguration"] == dict.fromkeys(
            ["BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"], True
        )
        assert properties["OwnershipControls"] == {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
        assert properties["VersioningConfiguration"] == {"Status": "Enabled"}


def test_every_bucket_has_a_tls_only_policy(resources):
    buckets = of_type(resources, "AWS::S3::Bucket")
    policies = of_type(resources, "AWS::S3::BucketPolicy").values()
    assert sorted(policy["Properties"]["Bucket"]["Ref"] for policy in policies) == sorted(buckets)
    for policy in policies:
        bucket = policy["Properties"]["Bucket"]["Ref"]
        deny = statement(policy["Properties"]["PolicyDocument"], "DenyInsecureTransport")
        assert deny["Effect"] == "Deny" and deny["Principal"] == "*"
        assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        assert deny["Resource"] == [arn_of(bucket), objects_of(bucket)]


def test_lifecycle_follows_the_instance_data_settings(resources):
    upload = resources["ProdUploadBucket"]["Properties"]["LifecycleConfiguration"]["Rules"][0]
    assert upload["NoncurrentVersionExpiration"] == {"NoncurrentDays": 90}  # prod's setting
    assert upload["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 7}
    dev_upload = resources["DevUploadBucket"]["Properties"]["LifecycleConfiguration"]["Rules"][0]
    assert dev_upload["NoncurrentVersionExpiration"] == {"NoncurrentDays": 30}  # the default
    results = resources["ProdAthenaResultsBucket"]["Properties"]["LifecycleConfiguration"]["Rules"][0]
    assert results["ExpirationInDays"] == 30


@pytest.mark.parametrize("instance", ["dev", "prod"])
def test_datasync_grant_names_the_instance_role_and_only_its_actions(resources, instance):
    bucket = INSTANCE_IDS[instance] + "UploadBucket"
    # The name the instance account's DataSync location points at.
    assert resources[bucket]["Properties"]["BucketName"] == f"rstudio-{instance}-uploads-{DATA_ACCOUNT}-eu-west-1"
    policy = resources[bucket + "Policy"]["Properties"]["PolicyDocument"]
    on_bucket, on_objects = statement(policy, "DataSyncBucket"), statement(policy, "DataSyncObjects")
    for grant in (on_bucket, on_objects):
        assert grant["Principal"] == role_principal(ACCOUNTS[instance])
        assert grant["Condition"] == principal_arn(ACCOUNTS[instance], f"rstudio-{instance}-datasync-s3")
    assert on_bucket["Action"] == ["s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketMultipartUploads"]
    assert on_bucket["Resource"] == [arn_of(bucket)]
    assert sorted(on_objects["Action"]) == [
        "s3:AbortMultipartUpload", "s3:DeleteObject", "s3:GetObject", "s3:GetObjectTagging", "s3:GetObjectVersion",
        "s3:GetObjectVersionTagging", "s3:ListMultipartUploadParts", "s3:PutObject", "s3:PutObjectTagging",
    ]  # fmt: skip
    assert on_objects["Resource"] == [objects_of(bucket, "hourly/*"), objects_of(bucket, "instant/*")]


def creator_grant(resources: dict[str, Any]) -> dict[str, Any]:
    return statement(resources["ProdUploadBucketPolicy"]["Properties"]["PolicyDocument"], "DataSyncLocationCreator")


def test_location_creator_grant_follows_the_permission_model(resources, example_data):
    creator = creator_grant(resources)
    assert creator["Action"] == ["s3:ListBucket"]
    assert creator["Condition"]["ArnLike"]["aws:PrincipalArn"] == sub(
        "arn:${AWS::Partition}:iam::666666666666:role/stacksets-exec-*"
    )
    example_data["stacksets"] = {"permission_model": "self_managed"}
    self_managed = build_all(parse_config(example_data))["Resources"]
    creator = creator_grant(self_managed)
    assert creator["Condition"]["ArnLike"]["aws:PrincipalArn"] == sub(
        "arn:${AWS::Partition}:iam::666666666666:role/AWSCloudFormationStackSetExecutionRole"
    )


def test_key_lets_the_datasync_role_decrypt_only_through_s3(resources):
    key = resources["DevDataKey"]["Properties"]
    assert key["EnableKeyRotation"] is True
    grant = statement(key["KeyPolicy"], "InstanceDataSyncReadsThroughS3")
    assert grant["Principal"] == role_principal(ACCOUNTS["dev"])
    assert grant["Action"] == ["kms:Decrypt", "kms:DescribeKey"]
    assert grant["Condition"] == {
        **principal_arn(ACCOUNTS["dev"], "rstudio-dev-datasync-s3"),
        "StringEquals": {"kms:ViaService": sub("s3.${AWS::Region}.amazonaws.com")},
    }
    assert resources["DevDataKeyAlias"]["Properties"]["AliasName"] == "alias/rstudio-dev-data"


def test_athena_role_trusts_exactly_the_instance_task_roles(resources):
    role = resources["DevAthenaRole"]["Properties"]
    [trust] = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == role_principal(ACCOUNTS["dev"])
    assert trust["Condition"] == principal_arn(ACCOUNTS["dev"], "rstudio-dev-rstudio-task")  # shared mode: one
    role = resources["ProdAthenaRole"]["Properties"]
    assert role["RoleName"] == "rstudio-prod-athena"
    [trust] = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == role_principal(ACCOUNTS["prod"])
    # Per-user mode: each server's role, by name.
    assert trust["Condition"] == {"ArnEquals": {"aws:PrincipalArn": [
        sub(f"arn:${{AWS::Partition}}:iam::{ACCOUNTS['prod']}:role/rstudio-prod-user-{user}")
        for user in ("alice", "bob", "chen")]}}  # fmt: skip
    assert "sts:AssumeRole" in trust["Action"]


def test_athena_role_reaches_only_its_own_instance(resources):
    [policy] = resources["DevAthenaRole"]["Properties"]["Policies"]
    document = policy["PolicyDocument"]
    assert statement(document, "QueryInWorkGroup")["Resource"] == [
        sub("arn:${AWS::Partition}:athena:${AWS::Region}:${AWS::AccountId}:workgroup/rstudio-dev")
    ]
    assert statement(document, "UseDataKey")["Resource"] == [arn_of("DevDataKey")]
    assert statement(document, "ReadUploads")["Resource"] == [objects_of("DevUploadBucket")]
    assert statement(document, "WriteResults")["Resource"] == [objects_of("DevAthenaResultsBucket")]
    text = str(document)
    assert "rstudio_dev" in text
    assert "prod" not in text.lower()
    for grant in document["Statement"]:
        assert grant["Effect"] == "Allow"
        assert all(not action.endswith("*") for action in grant["Action"])
        assert "*" not in grant["Resource"]


def test_workgroup_enforces_encrypted_output_in_the_results_bucket(resources):
    workgroup = resources["ProdAthenaWorkGroup"]["Properties"]
    assert workgroup["Name"] == "rstudio-prod"
    configuration = workgroup["WorkGroupConfiguration"]
    assert configuration["EnforceWorkGroupConfiguration"] is True
    assert configuration["PublishCloudWatchMetricsEnabled"] is True
    assert configuration["BytesScannedCutoffPerQuery"] == 107374182400  # prod's 100 GiB
    assert configuration["EngineVersion"] == {"SelectedEngineVersion": "AUTO"}
    assert configuration["ResultConfiguration"]["OutputLocation"] == (
        f"s3://rstudio-prod-athena-{DATA_ACCOUNT}-eu-west-1/results/"
    )
    assert configuration["ResultConfiguration"]["EncryptionConfiguration"] == {
        "EncryptionOption": "SSE_KMS",
        "KmsKey": arn_of("ProdDataKey"),
    }
    assert resources["ProdGlueDatabase"]["Properties"]["DatabaseInput"]["Name"] == "rstudio_prod"


def test_instant_uploads_are_forwarded_to_the_instance_bus_in_its_region(example_data):
    example_data["instances"]["dev"]["region"] = "eu-central-1"
    resources = build_all(parse_config(example_data))["Resources"]
    rule = resources["DevInstantUploadRule"]["Properties"]
    assert rule["EventPattern"] == {
        "source": ["aws.s3"],
        "detail-type": ["Object Created"],
        "detail": {
            # The bucket stays in the data region; only the target follows the instance.
            "bucket": {"name": [f"rstudio-dev-uploads-{DATA_ACCOUNT}-eu-west-1"]},
            "object": {"key": [{"prefix": "instant/"}]},
        },
    }
    bus = sub("arn:${AWS::Partition}:events:eu-central-1:555555555555:event-bus/default")
    [target] = rule["Targets"]
    assert target["Arn"] == bus
    assert target["RoleArn"] == arn_of("DevEventForwarderRole")
    assert target["DeadLetterConfig"] == {"Arn": arn_of("DevInstantDeadLetterQueue")}
    forwarder = resources["DevEventForwarderRole"]["Properties"]
    assert forwarder["RoleName"] == "rstudio-dev-event-forwarder"
    [trust] = forwarder["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "events.amazonaws.com"}
    assert trust["Condition"]["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
    [policy] = forwarder["Policies"]
    assert policy["PolicyDocument"]["Statement"] == [{"Effect": "Allow", "Action": ["events:PutEvents"],
                                                      "Resource": [bus]}]  # fmt: skip


def test_dead_letter_queue_is_encrypted_and_writable_only_by_its_rule(resources):
    assert resources["ProdInstantDeadLetterQueue"]["Properties"]["KmsMasterKeyId"] == arn_of("ProdDataKey")
    [grant] = resources["ProdInstantDeadLetterQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert grant["Action"] == ["sqs:SendMessage"]
    assert grant["Condition"] == {"ArnEquals": {"aws:SourceArn": arn_of("ProdInstantUploadRule")}}


def test_sftp_exists_only_where_enabled(cfg, resources):
    assert not cfg.instances["dev"].sftp.enabled and cfg.instances["prod"].sftp.enabled
    assert list(of_type(resources, "AWS::Transfer::Server")) == ["ProdSftpServer"]
    assert list(of_type(resources, "AWS::Transfer::User")) == ["ProdSftpUserPartnerAcme"]
    outputs = build_all(cfg)["Outputs"]
    assert {"ProdSftpServerId", "ProdSftpEndpoint"} <= set(outputs)
    assert not [name for name in outputs if name.startswith("DevSftp")]
    dev_key_grants = [grant["Sid"] for grant in resources["DevDataKey"]["Properties"]["KeyPolicy"]["Statement"]]
    assert "SftpLogGroup" not in dev_key_grants


def test_sftp_server_is_key_only_sftp_with_encrypted_retained_logs(resources):
    server = resources["ProdSftpServer"]["Properties"]
    assert server["Protocols"] == ["SFTP"]
    assert server["IdentityProviderType"] == "SERVICE_MANAGED"
    assert server["EndpointType"] == "PUBLIC"
    assert server["SecurityPolicyName"] == "TransferSecurityPolicy-2024-01"
    assert server["StructuredLogDestinations"] == [arn_of("ProdSftpLogGroup")]
    log_group = resources["ProdSftpLogGroup"]["Properties"]
    assert log_group["KmsKeyId"] == arn_of("ProdDataKey")
    assert log_group["RetentionInDays"] == 365  # prod's logs.retention_days
    logs = statement(resources["ProdDataKey"]["Properties"]["KeyPolicy"], "SftpLogGroup")
    assert logs["Condition"]["ArnEquals"]["kms:EncryptionContext:aws:logs:arn"] == sub(
        "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:" + log_group["LogGroupName"]
    )


def test_sftp_users_are_chrooted_into_their_folder_of_the_upload_bucket(resources):
    bucket = f"rstudio-prod-uploads-{DATA_ACCOUNT}-eu-west-1"
    user = resources["ProdSftpUserPartnerAcme"]["Properties"]
    assert user["UserName"] == "partner-acme"
    assert user["HomeDirectoryType"] == "LOGICAL"
    assert user["HomeDirectoryMappings"] == [{"Entry": "/", "Target": f"/{bucket}/instant"}]  # folder: instant
    assert user["Role"] == arn_of("ProdSftpUsersRole")
    assert user["SshPublicKeys"][0].startswith("ssh-ed25519 ")
    role = resources["ProdSftpUsersRole"]["Properties"]
    assert role["RoleName"] == "rstudio-prod-sftp-user"
    [trust] = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "transfer.amazonaws.com"}
    assert trust["Condition"]["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
    document = role["Policies"][0]["PolicyDocument"]
    listing = statement(document, "ListUploadPrefixes")
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["hourly/*", "instant/*"]}}
    assert statement(document, "UploadObjects")["Resource"] == [
        objects_of("ProdUploadBucket", "hourly/*"), objects_of("ProdUploadBucket", "instant/*")
    ]  # fmt: skip


def test_access_log_bucket_takes_only_s3_server_logs_of_this_account(resources):
    bucket = resources["AccessLogBucket"]["Properties"]
    [rule] = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"] == {"SSEAlgorithm": "AES256"}  # logging cannot write SSE-KMS
    assert bucket["LifecycleConfiguration"]["Rules"][0]["ExpirationInDays"] == 365  # longest instance retention
    delivery = statement(resources["AccessLogBucketPolicy"]["Properties"]["PolicyDocument"], "S3ServerAccessLogs")
    assert delivery["Principal"] == {"Service": "logging.s3.amazonaws.com"}
    assert delivery["Action"] == ["s3:PutObject"]
    assert delivery["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}


def test_stateful_resources_are_retained(resources):
    stateful = {name: r for name, r in resources.items() if r["Type"] in STATEFUL}
    assert len(stateful) == 5 + 2 + 1 + 2  # buckets, keys, the SFTP log group, Glue databases
    for resource in stateful.values():
        # Kept on deletion and replacement; deleted only when a first create rolls back (nothing to keep yet).
        assert (resource["DeletionPolicy"], resource["UpdateReplacePolicy"]) == ("RetainExceptOnCreate", "Retain")


def test_outputs_give_the_orchestrator_what_the_instance_needs(cfg):
    outputs = build_all(cfg)["Outputs"]
    for prefix in INSTANCE_IDS.values():
        for name in ("UploadBucketName", "UploadBucketArn", "DataKeyArn", "AthenaRoleArn", "AthenaWorkGroup",
                     "GlueDatabase"):  # fmt: skip
            assert prefix + name in outputs
            assert "Export" not in outputs[prefix + name]
    assert outputs["DevAthenaRoleArn"]["Value"] == arn_of("DevAthenaRole")


def test_adding_an_instance_changes_nothing_of_the_existing_ones(cfg, resources, example_data):
    bigger = with_data(example_data, qa={"account": "777777777777", "network": {"vpc_cidr": "10.40.0.0/20"}})
    template = build_all(bigger)
    assert {name: template["Resources"][name] for name in resources} == resources
    assert "QaUploadBucket" in template["Resources"]
    before = build_all(cfg)["Outputs"]
    assert {name: template["Outputs"][name] for name in before} == before


def test_many_instances_each_fit_a_stackset(example_data):
    """Why each instance has its own data StackSet: template size does not grow with the number of instances."""
    prod = example_data["instances"]["prod"]
    for index in range(6):
        clone = dict(prod, account=f"77777777777{index}", network={"vpc_cidr": f"10.{40 + index}.0.0/16"})
        example_data["instances"][f"team{index}"] = clone
    cfg = parse_config(example_data)
    for name in sorted(cfg.instances):
        text = render(instance_data.build(cfg, name), f"rstudio-{name}-data").decode()
        assert len(text.encode()) < TEMPLATE_BODY_BYTES * 0.6
        assert check_template(f"rstudio-{name}-data.yaml", text) == []
    assert len(render(data.build(cfg), "rstudio-data")) < TEMPLATE_BODY_BYTES * 0.2
