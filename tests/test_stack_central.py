from __future__ import annotations

import json
from typing import Any

import pytest

from generator.buildspec import image_buildspec
from generator.naming import ECR_REPOSITORIES
from generator.render import render
from generator.stacks import central
from stacksets import naming
from stacksets.awsmodel.engine import DefaultEnvironment, StackEngine
from stacksets.config import Config, parse_config
from stacksets.limits import TEMPLATE_BODY_BYTES
from stacksets.template_checks import check_template

REPOSITORY_ARNS = [{"Fn::GetAtt": [f"{name.capitalize()}Repository", "Arn"]} for name in ECR_REPOSITORIES]
KEY_ARN = {"Fn::GetAtt": ["ImageBuildKey", "Arn"]}


def _resources(cfg: Config) -> dict[str, dict[str, Any]]:
    return central.build(cfg).to_dict()["Resources"]


def _repositories(cfg: Config) -> dict[str, dict[str, Any]]:
    resources = _resources(cfg).values()
    return {r["Properties"]["RepositoryName"]: r for r in resources if r["Type"] == "AWS::ECR::Repository"}


def _statements(role: dict[str, Any]) -> dict[str, dict[str, Any]]:
    [policy] = role["Properties"]["Policies"]
    return {statement["Sid"]: statement for statement in policy["PolicyDocument"]["Statement"]}


def _rules(repository: dict[str, Any]) -> list[dict[str, Any]]:
    text = repository["Properties"]["LifecyclePolicy"]["LifecyclePolicyText"]
    return sorted(json.loads(text)["rules"], key=lambda rule: rule["rulePriority"])


def test_one_repository_per_image(cfg: Config) -> None:
    repositories = _repositories(cfg)
    assert set(repositories) == set(ECR_REPOSITORIES) == {"rstudio", "shiny", "bastion"}
    assert "RstudioRepository" in central.build(cfg).to_dict()["Resources"]


@pytest.mark.parametrize("name", ECR_REPOSITORIES)
def test_repository_is_immutable_scanned_and_retained(cfg: Config, name: str) -> None:
    repository = _repositories(cfg)[name]
    properties = repository["Properties"]
    assert properties["ImageTagMutability"] == "IMMUTABLE"
    assert properties["ImageScanningConfiguration"] == {"ScanOnPush": True}
    assert properties["EncryptionConfiguration"] == {"EncryptionType": "AES256"}
    # Kept on deletion and replacement; deleted only when a first create rolls back (nothing to keep yet).
    assert (repository["DeletionPolicy"], repository["UpdateReplacePolicy"]) == ("RetainExceptOnCreate", "Retain")


@pytest.mark.parametrize("name", ECR_REPOSITORIES)
def test_kms_check_is_skipped_with_a_reason(cfg: Config, name: str) -> None:
    skips = _repositories(cfg)[name]["Metadata"]["checkov"]["skip"]
    assert [skip["id"] for skip in skips] == ["CKV_AWS_136"]
    assert "organization" in skips[0]["comment"]


def test_only_the_organization_may_pull(cfg: Config, example_data: dict[str, Any]) -> None:
    for repository in _repositories(cfg).values():
        assert repository["Properties"]["RepositoryPolicyText"]["Statement"] == [
            {
                "Sid": "PullFromOrganization",
                "Effect": "Allow",
                "Principal": "*",
                "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"],
                "Condition": {"StringEquals": {"aws:PrincipalOrgID": "o-a1b2c3d4e5"}},
            }
        ]

    example_data["organization"]["id"] = "o-zzzzzzzzzz"
    for repository in _repositories(parse_config(example_data)).values():
        statement = repository["Properties"]["RepositoryPolicyText"]["Statement"][0]
        assert statement["Condition"] == {"StringEquals": {"aws:PrincipalOrgID": "o-zzzzzzzzzz"}}


def test_lifecycle_rules_come_from_config(example_data: dict[str, Any]) -> None:
    example_data["central"]["ecr"] = {"keep_tagged_images": 12, "untagged_expiry_days": 3}
    for repository in _repositories(parse_config(example_data)).values():
        untagged, tagged = _rules(repository)
        assert untagged["selection"] == {
            "tagStatus": "untagged",
            "countType": "sinceImagePushed",
            "countUnit": "days",
            "countNumber": 3,
        }
        assert tagged["selection"] == {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 12}
        assert untagged["action"] == tagged["action"] == {"type": "expire"}


def test_lifecycle_any_rule_is_evaluated_last(cfg: Config) -> None:
    rules = _rules(_repositories(cfg)["rstudio"])
    priorities = [rule["rulePriority"] for rule in rules]
    assert len(set(priorities)) == len(priorities)
    # ECR requires the tagStatus "any" rule to have the highest priority; the untagged rule before it claims the
    # untagged images, so the count only ever expires tagged ones.
    assert [rule["selection"]["tagStatus"] for rule in rules] == ["untagged", "any"]


def test_outputs_uri_and_arn_of_each_repository(cfg: Config) -> None:
    outputs = central.build(cfg).to_dict()["Outputs"]
    assert outputs["ShinyRepositoryUri"]["Value"] == {"Fn::GetAtt": ["ShinyRepository", "RepositoryUri"]}
    assert outputs["ShinyRepositoryArn"]["Value"] == {"Fn::GetAtt": ["ShinyRepository", "Arn"]}
    assert len([name for name in outputs if name.endswith(("RepositoryUri", "RepositoryArn"))]) == 2 * len(
        ECR_REPOSITORIES
    )


# ----------------------------------------------------------------------------------------------------------------------
# Image build


def test_image_build_resources_have_named_logical_ids(cfg: Config) -> None:
    types = {logical_id: resource["Type"] for logical_id, resource in _resources(cfg).items()}
    assert types == {
        "RstudioRepository": "AWS::ECR::Repository",
        "ShinyRepository": "AWS::ECR::Repository",
        "BastionRepository": "AWS::ECR::Repository",
        "ImageBuildKey": "AWS::KMS::Key",
        "ImageBuildKeyAlias": "AWS::KMS::Alias",
        "ImageBuildBucket": "AWS::S3::Bucket",
        "ImageBuildBucketPolicy": "AWS::S3::BucketPolicy",
        "DockerHubSecret": "AWS::SecretsManager::Secret",
        "ImageBuildLogGroup": "AWS::Logs::LogGroup",
        "ImageBuildRole": "AWS::IAM::Role",
        "ImageBuildProject": "AWS::CodeBuild::Project",
        "ImagePublisherRole": "AWS::IAM::Role",
    }


@pytest.mark.parametrize("logical_id", ["ImageBuildKey", "ImageBuildBucket", "DockerHubSecret", "ImageBuildLogGroup"])
def test_stateful_image_build_resources_are_retained(cfg: Config, logical_id: str) -> None:
    resource = _resources(cfg)[logical_id]
    assert (resource["DeletionPolicy"], resource["UpdateReplacePolicy"]) == ("RetainExceptOnCreate", "Retain")


def test_key_rotates_and_lets_logs_use_it_for_the_build_log_group_only(cfg: Config) -> None:
    key = _resources(cfg)["ImageBuildKey"]["Properties"]
    assert key["EnableKeyRotation"] is True
    statements = {s["Sid"]: s for s in key["KeyPolicy"]["Statement"]}
    assert set(statements) == {"AccountAdministersKeyThroughIam", "AccountUsesKeyThroughIam", "ImageBuildLogGroup"}
    logs = statements["ImageBuildLogGroup"]
    assert logs["Principal"] == {"Service": {"Fn::Sub": "logs.${AWS::Region}.amazonaws.com"}}
    assert logs["Condition"] == {"ArnEquals": {"kms:EncryptionContext:aws:logs:arn": {
        "Fn::Sub": "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:/rstudio/central/image-build"
    }}}  # fmt: skip
    assert _resources(cfg)["ImageBuildKeyAlias"]["Properties"]["AliasName"] == "alias/rstudio-central"


def test_artifact_bucket_is_named_encrypted_and_tls_only(cfg: Config) -> None:
    resources = _resources(cfg)
    bucket = resources["ImageBuildBucket"]["Properties"]
    assert bucket["BucketName"] == naming.image_build_bucket(cfg.accounts.central, cfg.default_region)
    assert bucket["BucketName"] == "rstudio-image-builds-222222222222-eu-west-1"
    [rule] = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"] == {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": KEY_ARN}
    assert bucket["PublicAccessBlockConfiguration"] == dict.fromkeys(
        ["BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"], True
    )
    policy = resources["ImageBuildBucketPolicy"]["Properties"]
    assert policy["Bucket"] == {"Ref": "ImageBuildBucket"}
    [deny] = policy["PolicyDocument"]["Statement"]
    assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_artifact_bucket_skips_access_logging_with_a_reason(cfg: Config) -> None:
    [skip] = _resources(cfg)["ImageBuildBucket"]["Metadata"]["checkov"]["skip"]
    assert skip["id"] == "CKV_AWS_18" and "content-hash" in skip["comment"]


def test_build_contexts_expire_after_the_configured_days(example_data: dict[str, Any]) -> None:
    example_data["images"]["build"]["context_expiry_days"] = 14
    bucket = _resources(parse_config(example_data))["ImageBuildBucket"]["Properties"]
    rules = {rule["Id"]: rule for rule in bucket["LifecycleConfiguration"]["Rules"]}
    assert rules["expire-build-contexts"] == {"Id": "expire-build-contexts", "Status": "Enabled",
                                              "Prefix": "contexts/", "ExpirationInDays": 14}  # fmt: skip
    versions = rules["expire-replaced-versions"]
    assert versions["NoncurrentVersionExpiration"] == {"NoncurrentDays": 1}
    assert versions["ExpiredObjectDeleteMarker"] is True and "Prefix" not in versions


def test_docker_hub_secret_is_a_generated_placeholder(cfg: Config) -> None:
    secret = _resources(cfg)["DockerHubSecret"]["Properties"]
    assert secret["Name"] == naming.DOCKER_HUB_SECRET == "rstudio/central/docker-hub"
    assert secret["KmsKeyId"] == KEY_ARN
    assert "SecretString" not in secret  # nothing literal: CloudFormation generates the token
    generate = secret["GenerateSecretString"]
    assert json.loads(generate["SecretStringTemplate"]) == {"username": ""}
    assert generate["GenerateStringKey"] == "token"
    assert "RotationSchedule" not in {r["Type"].rsplit("::", 1)[-1] for r in _resources(cfg).values()}


def test_build_log_group_is_encrypted_with_configured_retention(example_data: dict[str, Any]) -> None:
    example_data["images"]["build"]["log_retention_days"] = 30
    log_group = _resources(parse_config(example_data))["ImageBuildLogGroup"]["Properties"]
    assert log_group == {"LogGroupName": "/rstudio/central/image-build", "KmsKeyId": KEY_ARN, "RetentionInDays": 30}


def test_project_runs_the_inline_buildspec_in_a_privileged_standard_image(cfg: Config) -> None:
    project = _resources(cfg)["ImageBuildProject"]["Properties"]
    assert project["Name"] == naming.IMAGE_BUILD_PROJECT == "rstudio-images"
    assert project["Source"] == {"Type": "NO_SOURCE", "BuildSpec": image_buildspec()}
    assert project["Artifacts"] == {"Type": "NO_ARTIFACTS"}
    assert project["EncryptionKey"] == KEY_ARN
    assert project["ServiceRole"] == {"Fn::GetAtt": ["ImageBuildRole", "Arn"]}
    environment = project["Environment"]
    assert environment["Type"] == "LINUX_CONTAINER"
    assert environment["Image"] == "aws/codebuild/standard:7.0"
    assert environment["PrivilegedMode"] is True
    assert project["LogsConfig"]["CloudWatchLogs"] == {"Status": "ENABLED", "GroupName": {"Ref": "ImageBuildLogGroup"}}


def test_project_settings_come_from_config(example_data: dict[str, Any]) -> None:
    example_data["images"]["build"].update(compute_type="BUILD_GENERAL1_XLARGE", timeout_minutes=120)
    project = _resources(parse_config(example_data))["ImageBuildProject"]["Properties"]
    assert project["Environment"]["ComputeType"] == "BUILD_GENERAL1_XLARGE"
    assert project["TimeoutInMinutes"] == 120


def test_project_environment_variables(cfg: Config) -> None:
    variables = {v["Name"]: v for v in _resources(cfg)["ImageBuildProject"]["Properties"]["Environment"][
        "EnvironmentVariables"]}  # fmt: skip
    assert variables == {
        "ARTIFACT_BUCKET": {"Name": "ARTIFACT_BUCKET", "Type": "PLAINTEXT", "Value": {"Ref": "ImageBuildBucket"}},
        "REGISTRY": {"Name": "REGISTRY", "Type": "PLAINTEXT",
                     "Value": {"Fn::Sub": "${AWS::AccountId}.dkr.ecr.${AWS::Region}.${AWS::URLSuffix}"}},
        "DOCKERHUB_USERNAME": {"Name": "DOCKERHUB_USERNAME", "Type": "SECRETS_MANAGER",
                               "Value": "rstudio/central/docker-hub:username"},
        "DOCKERHUB_TOKEN": {"Name": "DOCKERHUB_TOKEN", "Type": "SECRETS_MANAGER",
                            "Value": "rstudio/central/docker-hub:token"},
    }  # fmt: skip


def test_build_role_is_trusted_by_codebuild_for_this_project_only(cfg: Config) -> None:
    [statement] = _resources(cfg)["ImageBuildRole"]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "codebuild.amazonaws.com"}
    assert statement["Condition"] == {
        "StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}},
        "ArnLike": {"aws:SourceArn": {
            "Fn::Sub": "arn:${AWS::Partition}:codebuild:${AWS::Region}:${AWS::AccountId}:project/rstudio-images"}},
    }  # fmt: skip


def test_build_role_reads_contexts_secret_and_key_and_writes_its_log_group(cfg: Config) -> None:
    statements = _statements(_resources(cfg)["ImageBuildRole"])
    assert statements["ReadBuildContexts"]["Action"] == ["s3:GetObject"]
    assert statements["ReadBuildContexts"]["Resource"] == [{"Fn::Sub": "${ImageBuildBucket.Arn}/contexts/*"}]
    assert statements["ReadDockerHubAccount"]["Resource"] == [{"Ref": "DockerHubSecret"}]
    assert statements["UseImageBuildKey"]["Resource"] == [KEY_ARN]
    assert statements["WriteBuildLogs"]["Resource"] == [{"Fn::GetAtt": ["ImageBuildLogGroup", "Arn"]}]


@pytest.mark.parametrize("role", ["ImageBuildRole", "ImagePublisherRole"])
def test_roles_push_to_the_three_repositories_only(cfg: Config, role: str) -> None:
    statements = _statements(_resources(cfg)[role]).values()
    ecr = [s for s in statements if any(action.startswith("ecr:") for action in s["Action"])]
    everywhere = [s for s in ecr if s["Resource"] == ["*"]]
    assert [s["Action"] for s in everywhere] == [["ecr:GetAuthorizationToken"]]
    for statement in ecr:
        assert statement["Effect"] == "Allow"
        if statement not in everywhere:
            assert statement["Resource"] == REPOSITORY_ARNS
    pushed = {action for s in ecr for action in s["Action"] if s not in everywhere}
    assert {"ecr:PutImage", "ecr:InitiateLayerUpload", "ecr:UploadLayerPart", "ecr:CompleteLayerUpload"} <= pushed
    assert pushed <= {"ecr:BatchCheckLayerAvailability", "ecr:InitiateLayerUpload", "ecr:UploadLayerPart",
                      "ecr:CompleteLayerUpload", "ecr:PutImage", "ecr:BatchGetImage", "ecr:DescribeImages",
                      "ecr:DescribeImageScanFindings"}  # fmt: skip


def test_publisher_role_is_trusted_by_the_admin_account_only(cfg: Config, example_data: dict[str, Any]) -> None:
    role = _resources(cfg)["ImagePublisherRole"]["Properties"]
    assert role["RoleName"] == naming.IMAGE_PUBLISHER_ROLE == "rstudio-image-publisher"
    assert role["AssumeRolePolicyDocument"]["Statement"] == [
        {"Effect": "Allow", "Action": ["sts:AssumeRole"],
         "Principal": {"AWS": {"Fn::Sub": "arn:${AWS::Partition}:iam::111111111111:root"}}}
    ]  # fmt: skip
    assert cfg.accounts.admin == "111111111111"

    example_data["accounts"]["admin"] = "999999999999"
    [statement] = _resources(parse_config(example_data))["ImagePublisherRole"]["Properties"][
        "AssumeRolePolicyDocument"]["Statement"]  # fmt: skip
    assert statement["Principal"] == {"AWS": {"Fn::Sub": "arn:${AWS::Partition}:iam::999999999999:root"}}


def test_publisher_uploads_contexts_and_runs_builds_with_the_reviewed_buildspec(cfg: Config) -> None:
    statements = _statements(_resources(cfg)["ImagePublisherRole"])
    project = [{"Fn::GetAtt": ["ImageBuildProject", "Arn"]}]
    assert statements["UploadBuildContexts"]["Action"] == ["s3:PutObject", "s3:GetObject"]
    assert statements["UploadBuildContexts"]["Resource"] == [{"Fn::Sub": "${ImageBuildBucket.Arn}/contexts/*"}]
    assert set(statements["UseImageBuildKey"]["Action"]) == {"kms:GenerateDataKey", "kms:Decrypt"}
    assert statements["RunImageBuilds"]["Action"] == ["codebuild:StartBuild", "codebuild:BatchGetBuilds"]
    assert statements["RunImageBuilds"]["Resource"] == project
    override = statements["NoBuildspecOverride"]
    assert override["Effect"] == "Deny" and override["Action"] == ["codebuild:StartBuild"]
    assert override["Resource"] == project
    assert override["Condition"] == {"Null": {"codebuild:source.buildspec": "false"}}
    assert statements["ReadBuildLogs"] == {"Sid": "ReadBuildLogs", "Effect": "Allow", "Action": ["logs:GetLogEvents"],
                                           "Resource": [{"Fn::GetAtt": ["ImageBuildLogGroup", "Arn"]}]}  # fmt: skip


def test_image_build_outputs(cfg: Config) -> None:
    outputs = central.build(cfg).to_dict()["Outputs"]
    assert outputs["ImageBuildBucketName"]["Value"] == {"Ref": "ImageBuildBucket"}
    assert outputs["ImageBuildProjectName"]["Value"] == {"Ref": "ImageBuildProject"}
    assert outputs["ImagePublisherRoleArn"]["Value"] == {"Fn::GetAtt": ["ImagePublisherRole", "Arn"]}
    assert len(outputs) == 2 * len(ECR_REPOSITORIES) + 3


def test_rendered_template_fits_inline_and_passes_the_house_rules(cfg: Config) -> None:
    text = render(central.build(cfg), naming.CENTRAL)
    assert len(text) < TEMPLATE_BODY_BYTES
    assert check_template(naming.template_file(naming.CENTRAL), text.decode("utf-8")) == []


def test_the_aws_model_creates_the_generated_central_stack(cfg: Config) -> None:
    """The committed template deploys in the sandbox tests; this one creates what the generator makes now, as
    CloudFormation would (stacksets.awsmodel's stack engine)."""
    body = render(central.build(cfg), naming.CENTRAL).decode("utf-8")
    engine = StackEngine(DefaultEnvironment())
    stack = engine.create("central", cfg.accounts.central, cfg.default_region, body, {})
    assert stack.status == "CREATE_COMPLETE", stack.status_reason
    assert stack.outputs["ImageBuildBucketName"] == naming.image_build_bucket(cfg.accounts.central,
                                                                              cfg.default_region)  # fmt: skip
    assert stack.outputs["ImagePublisherRoleArn"].endswith(f":role/{naming.IMAGE_PUBLISHER_ROLE}")
    [secret] = [r for r in stack.resources.values() if r.resource_type == "AWS::SecretsManager::Secret"]
    generate = secret.properties["GenerateSecretString"]
    assert json.loads(generate["SecretStringTemplate"]) == {"username": ""} and generate["GenerateStringKey"] == "token"
