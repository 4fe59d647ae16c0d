"""rstudio-fargate central: the rstudio, shiny and bastion images, their ECR repositories and the build that fills them.

Deployed by the `rstudio-central` StackSet to the central (tooling) account in the default region. It holds:
- one ECR repository per image. Tags are immutable, so an instance pinned to a tag always runs the image that was
  reviewed; every push is scanned. Instance accounts pull across accounts through the repository policy, which admits
  principals of the organization only;
- the image build: `deploy.py images` (in the admin account) assumes the publisher role, uploads container/<image>/
  as a build context to the artifact bucket under its content-hash tag and starts the CodeBuild project, which checks
  the context against the tag, builds, pushes and reports the scan (generator/buildspec.py). A tag that is already
  in its repository is not built again: the tag names the content;
- a Secrets Manager secret for a Docker Hub account, because the base images come from Docker Hub and CodeBuild's
  shared addresses run into its anonymous pull limit. The stack creates it with an empty username and a random token;
  the platform team puts the real account in once (until then every build fails with a message showing how):
      aws secretsmanager put-secret-value --secret-id rstudio/central/docker-hub \\
          --secret-string '{"username":"...","token":"..."}'
  Later stack updates leave the value alone as long as GenerateSecretString below is not edited.
One KMS key encrypts the bucket, the secret, the build log group and CodeBuild's own data; the repositories use
AES256 (see add_repository).
"""

from __future__ import annotations

import json
from typing import NamedTuple

import awacs.codebuild
import awacs.kms
import awacs.logs
import awacs.s3
import awacs.secretsmanager
import awacs.sts
from awacs import ecr
from awacs.aws import ArnEquals, AWSPrincipal, Condition, Deny, Null, PolicyDocument, Principal, StringEquals
from troposphere import GetAtt, Output, Ref, Sub, Template
from troposphere.codebuild import (
    Artifacts,
    CloudWatchLogs,
    Environment,
    EnvironmentVariable,
    LogsConfig,
    Project,
    S3Logs,
    Source,
)
from troposphere.ecr import (
    EncryptionConfiguration,
    ImageScanningConfiguration,
    LifecyclePolicy,
    Repository,
)
from troposphere.iam import Policy as RolePolicy
from troposphere.iam import Role
from troposphere.kms import Alias, Key
from troposphere.logs import LogGroup
from troposphere.s3 import Bucket, LifecycleRule, NoncurrentVersionExpiration
from troposphere.secretsmanager import GenerateSecretString, Secret

from generator.buckets import abort_multipart, add_bucket_policy, hardened_bucket, object_arn
from generator.buildspec import image_buildspec
from generator.common import new_template, retain, skip_checkov
from generator.iam import (
    LOGS_KEY_ACTIONS,
    Allow,
    Statement,
    account_key_statements,
    account_root,
    document,
    kms_actions,
    regional_arn,
    service_trust,
)
from generator.naming import ECR_REPOSITORIES, logical_id
from stacksets import naming
from stacksets.config import Config, EcrSettings

PULL_ACTIONS = [ecr.BatchGetImage, ecr.GetDownloadUrlForLayer, ecr.BatchCheckLayerAvailability]
# What `docker push` needs, plus reading back what was pushed and its scan: the only ECR rights of the build.
PUSH_ACTIONS = [ecr.BatchCheckLayerAvailability, ecr.InitiateLayerUpload, ecr.UploadLayerPart,
                ecr.CompleteLayerUpload, ecr.PutImage, ecr.BatchGetImage, ecr.DescribeImages,
                ecr.DescribeImageScanFindings]  # fmt: skip
BUILD_LOG_GROUP = "/rstudio/central/image-build"
BUILD_IMAGE = "aws/codebuild/standard:7.0"
CONTEXTS_PREFIX = "contexts/"


class RepositoryOutputs(NamedTuple):
    uri: Output
    arn: Output


class ImageBuild(NamedTuple):
    key: Key
    bucket: Bucket
    secret: Secret
    log_group: LogGroup
    role: Role
    project: Project
    publisher: Role


def build(cfg: Config) -> Template:
    t = new_template(__doc__)
    repositories = []
    for name in ECR_REPOSITORIES:
        repository = add_repository(t, cfg, name)
        add_repository_outputs(t, name, repository)
        repositories.append(repository)
    add_image_build_outputs(t, add_image_build(t, cfg, repositories))
    return t


def add_image_build(t: Template, cfg: Config, repositories: list[Repository]) -> ImageBuild:
    key = add_key(t)
    bucket = add_artifact_bucket(t, cfg, key)
    secret = add_docker_hub_secret(t, key)
    log_group = add_build_log_group(t, cfg, key)
    role = add_build_role(t, key, bucket, secret, log_group, repositories)
    project = add_build_project(t, cfg, key, bucket, log_group, role)
    publisher = add_publisher_role(t, cfg, key, bucket, log_group, project, repositories)
    return ImageBuild(key, bucket, secret, log_group, role, project, publisher)


def add_repository(t: Template, cfg: Config, name: str) -> Repository:
    repository = Repository(
        logical_id(name, "Repository"),
        RepositoryName=name,
        ImageTagMutability="IMMUTABLE",
        ImageScanningConfiguration=ImageScanningConfiguration(ScanOnPush=True),
        # Encrypted at rest with S3-managed keys: access is the repository policy's job, and a customer KMS key
        # would need a second, org-wide grant in its key policy that narrows nothing.
        EncryptionConfiguration=EncryptionConfiguration(EncryptionType="AES256"),
        LifecyclePolicy=LifecyclePolicy(LifecyclePolicyText=lifecycle_policy_text(cfg.central.ecr)),
        RepositoryPolicyText=pull_policy(cfg.organization.id),
    )
    skip_checkov(
        repository,
        CKV_AWS_136="AES256 on purpose: every account of the organization pulls, and a KMS key would add an "
        "org-wide key policy without narrowing access; images hold no secrets",
    )
    return t.add_resource(retain(repository))


def lifecycle_policy_text(settings: EcrSettings) -> str:
    """Untagged layers go after a few days; of the tagged images only the newest N stay.

    ECR hands each image to the first rule (lowest rulePriority) whose tag status matches it, and a rule with
    tagStatus "any" must come last: so rule 1 owns every untagged image and the count in rule 2 sees tagged ones only.
    """
    rules = [
        {
            "rulePriority": 1,
            "description": f"Expire untagged images after {settings.untagged_expiry_days} days",
            "selection": {
                "tagStatus": "untagged",
                "countType": "sinceImagePushed",
                "countUnit": "days",
                "countNumber": settings.untagged_expiry_days,
            },
            "action": {"type": "expire"},
        },
        {
            "rulePriority": 2,
            "description": f"Keep the newest {settings.keep_tagged_images} tagged images",
            "selection": {
                "tagStatus": "any",
                "countType": "imageCountMoreThan",
                "countNumber": settings.keep_tagged_images,
            },
            "action": {"type": "expire"},
        },
    ]
    return json.dumps({"rules": rules}, sort_keys=True)


def pull_policy(organization_id: str) -> PolicyDocument:
    # Principal "*" is scoped by aws:PrincipalOrgID: instance accounts join and leave the organization without
    # this policy changing, and nothing outside the organization can pull.
    statement = Statement(
        Sid="PullFromOrganization",
        Effect=Allow,
        Principal=Principal("*"),
        Action=PULL_ACTIONS,
        Condition=Condition(StringEquals("aws:PrincipalOrgID", organization_id)),
    )
    return document(statement)


def add_repository_outputs(t: Template, name: str, repository: Repository) -> RepositoryOutputs:
    uri = Output(logical_id(name, "RepositoryUri"), Description=f"{name} image repository URI",
                 Value=GetAtt(repository, "RepositoryUri"))  # fmt: skip
    arn = Output(logical_id(name, "RepositoryArn"), Description=f"{name} image repository ARN",
                 Value=GetAtt(repository, "Arn"))  # fmt: skip
    t.add_output([uri, arn])
    return RepositoryOutputs(uri, arn)


# ------------------------------------------------------------------------------------------------------------------
# Image build


def add_key(t: Template) -> Key:
    """The central key: artifact bucket, Docker Hub secret, build log group and CodeBuild's build data."""
    key_policy = document(
        *account_key_statements(),
        # "*" in a key policy means this key; the encryption context pins CloudWatch Logs to the build log group.
        Statement(Sid="ImageBuildLogGroup", Effect=Allow, Resource=["*"],
                  Principal=Principal("Service", Sub("logs.${AWS::Region}.amazonaws.com")),
                  Action=kms_actions(LOGS_KEY_ACTIONS),
                  Condition=Condition(ArnEquals("kms:EncryptionContext:aws:logs:arn",
                                                regional_arn("logs", f"log-group:{BUILD_LOG_GROUP}")))),
    )  # fmt: skip
    key = t.add_resource(
        retain(Key(logical_id("ImageBuildKey"), Description="RStudio central: image build contexts, logs and secret",
                   EnableKeyRotation=True, KeyPolicy=key_policy))
    )  # fmt: skip
    t.add_resource(Alias(logical_id("ImageBuildKeyAlias"), AliasName=f"alias/{naming.CENTRAL}", TargetKeyId=Ref(key)))
    return key


def add_artifact_bucket(t: Template, cfg: Config, key: Key) -> Bucket:
    """Build contexts, uploaded by the publisher and read by the build; each is needed only until its image exists."""
    settings = cfg.images.build
    rules = [
        LifecycleRule(Id="expire-build-contexts", Status="Enabled", Prefix=CONTEXTS_PREFIX,
                      ExpirationInDays=settings.context_expiry_days),
        LifecycleRule(Id="expire-replaced-versions", Status="Enabled", ExpiredObjectDeleteMarker=True,
                      NoncurrentVersionExpiration=NoncurrentVersionExpiration(NoncurrentDays=1),
                      AbortIncompleteMultipartUpload=abort_multipart()),
    ]  # fmt: skip
    name = naming.image_build_bucket(cfg.accounts.central, cfg.default_region)
    bucket = skip_checkov(
        hardened_bucket(logical_id("ImageBuildBucket"), name, key, rules),
        CKV_AWS_18="holds only copies of the reviewed container/ directories, each checked against its content-hash "
        "tag before a build; who uploaded and who built is in CloudTrail and the build log",
    )
    t.add_resource(bucket)
    add_bucket_policy(t, bucket)
    return bucket


def add_docker_hub_secret(t: Template, key: Key) -> Secret:
    # No rotation schedule: a Docker Hub access token is replaced by the platform team, not rotated by a Lambda.
    secret = Secret(
        logical_id("DockerHubSecret"), Name=naming.DOCKER_HUB_SECRET, KmsKeyId=GetAtt(key, "Arn"),
        Description="Docker Hub account of the image build (JSON with username and token); created with an empty "
                    "username, filled in by the platform team (see generator/stacks/central.py)",
        # An empty username is what the buildspec recognises as "not filled in yet"; the random token only keeps a
        # literal secret out of the template.
        GenerateSecretString=GenerateSecretString(SecretStringTemplate='{"username": ""}', GenerateStringKey="token",
                                                  PasswordLength=32, ExcludePunctuation=True),
    )  # fmt: skip
    return t.add_resource(retain(secret))


def add_build_log_group(t: Template, cfg: Config, key: Key) -> LogGroup:
    settings = cfg.images.build
    return t.add_resource(retain(LogGroup(logical_id("ImageBuildLogGroup"), LogGroupName=BUILD_LOG_GROUP,
                                          KmsKeyId=GetAtt(key, "Arn"),
                                          RetentionInDays=settings.log_retention_days)))  # fmt: skip


def repository_arns(repositories: list[Repository]) -> list[GetAtt]:
    return [GetAtt(repository, "Arn") for repository in repositories]


def add_build_role(t: Template, key: Key, bucket: Bucket, secret: Secret, log_group: LogGroup,
                   repositories: list[Repository]) -> Role:  # fmt: skip
    """CodeBuild's service role: read a context, read the Docker Hub account, push to the three repositories."""
    project_arn = regional_arn("codebuild", f"project/{naming.IMAGE_BUILD_PROJECT}")
    permissions = document(
        # A log group's Arn ends in ":*", which covers its streams.
        Statement(Sid="WriteBuildLogs", Effect=Allow, Action=[awacs.logs.CreateLogStream, awacs.logs.PutLogEvents],
                  Resource=[GetAtt(log_group, "Arn")]),
        Statement(Sid="ReadBuildContexts", Effect=Allow, Action=[awacs.s3.GetObject],
                  Resource=[object_arn(bucket, f"{CONTEXTS_PREFIX}*")]),
        Statement(Sid="ReadDockerHubAccount", Effect=Allow, Action=[awacs.secretsmanager.GetSecretValue],
                  Resource=[Ref(secret)]),
        Statement(Sid="UseImageBuildKey", Effect=Allow, Action=[awacs.kms.Decrypt, awacs.kms.GenerateDataKey],
                  Resource=[GetAtt(key, "Arn")]),
        # GetAuthorizationToken has no resource-level permissions: IAM accepts only "*" for it.
        Statement(Sid="EcrLogin", Effect=Allow, Action=[ecr.GetAuthorizationToken], Resource=["*"]),
        Statement(Sid="PushImages", Effect=Allow, Action=PUSH_ACTIONS, Resource=repository_arns(repositories)),
    )  # fmt: skip
    return t.add_resource(
        Role(logical_id("ImageBuildRole"), Description="CodeBuild service role of the image build",
             AssumeRolePolicyDocument=service_trust("codebuild.amazonaws.com", project_arn),
             Policies=[RolePolicy(PolicyName="build-and-push-images", PolicyDocument=permissions)])
    )  # fmt: skip


def add_build_project(t: Template, cfg: Config, key: Key, bucket: Bucket, log_group: LogGroup,
                      role: Role) -> Project:  # fmt: skip
    """One build per image and tag; the orchestrator sets IMAGE_NAME and IMAGE_TAG when it starts one."""
    settings = cfg.images.build
    variables = [
        EnvironmentVariable(Name="ARTIFACT_BUCKET", Type="PLAINTEXT", Value=Ref(bucket)),
        EnvironmentVariable(Name="REGISTRY", Type="PLAINTEXT",
                            Value=Sub("${AWS::AccountId}.dkr.ecr.${AWS::Region}.${AWS::URLSuffix}")),
        # CodeBuild's "<secret-id>:<json-key>" form: it reads the secret at build start and masks it in the log.
        EnvironmentVariable(Name="DOCKERHUB_USERNAME", Type="SECRETS_MANAGER",
                            Value=f"{naming.DOCKER_HUB_SECRET}:username"),
        EnvironmentVariable(Name="DOCKERHUB_TOKEN", Type="SECRETS_MANAGER", Value=f"{naming.DOCKER_HUB_SECRET}:token"),
    ]  # fmt: skip
    # Privileged: docker build needs the Docker daemon, which CodeBuild runs only in privileged mode. What it builds
    # is only ever a context that matches its reviewed tag (the buildspec checks, and no build may override it).
    environment = Environment(Type="LINUX_CONTAINER", Image=BUILD_IMAGE, ComputeType=settings.compute_type,
                              ImagePullCredentialsType="CODEBUILD", PrivilegedMode=True,
                              EnvironmentVariables=variables)  # fmt: skip
    project = Project(
        logical_id("ImageBuildProject"), Name=naming.IMAGE_BUILD_PROJECT,
        Description="Builds one image from a build context that matches its tag, pushes it and reports its scan",
        ServiceRole=GetAtt(role, "Arn"), EncryptionKey=GetAtt(key, "Arn"),
        Source=Source(Type="NO_SOURCE", BuildSpec=image_buildspec()), Artifacts=Artifacts(Type="NO_ARTIFACTS"),
        Environment=environment, TimeoutInMinutes=settings.timeout_minutes,
        LogsConfig=LogsConfig(CloudWatchLogs=CloudWatchLogs(Status="ENABLED", GroupName=Ref(log_group)),
                              S3Logs=S3Logs(Status="DISABLED")),
    )  # fmt: skip
    return t.add_resource(project)


def add_publisher_role(t: Template, cfg: Config, key: Key, bucket: Bucket, log_group: LogGroup, project: Project,
                       repositories: list[Repository]) -> Role:  # fmt: skip
    """Assumed from the admin account by `deploy.py images`: upload contexts, run and follow builds, or push itself."""
    trust = document(Statement(Effect=Allow, Principal=AWSPrincipal(account_root(cfg.accounts.admin)),
                               Action=[awacs.sts.AssumeRole]))  # fmt: skip
    permissions = document(
        Statement(Sid="UploadBuildContexts", Effect=Allow, Action=[awacs.s3.PutObject, awacs.s3.GetObject],
                  Resource=[object_arn(bucket, f"{CONTEXTS_PREFIX}*")]),
        Statement(Sid="UseImageBuildKey", Effect=Allow, Action=[awacs.kms.GenerateDataKey, awacs.kms.Decrypt],
                  Resource=[GetAtt(key, "Arn")]),
        Statement(Sid="RunImageBuilds", Effect=Allow, Resource=[GetAtt(project, "Arn")],
                  Action=[awacs.codebuild.StartBuild, awacs.codebuild.BatchGetBuilds]),
        # The buildspec is what checks a context against its tag: a build may set IMAGE_NAME and IMAGE_TAG, never
        # bring its own commands.
        Statement(Sid="NoBuildspecOverride", Effect=Deny, Resource=[GetAtt(project, "Arn")],
                  Action=[awacs.codebuild.StartBuild],
                  Condition=Condition(Null("codebuild:source.buildspec", "false"))),
        Statement(Sid="ReadBuildLogs", Effect=Allow, Action=[awacs.logs.GetLogEvents],
                  Resource=[GetAtt(log_group, "Arn")]),
        # Pushing, with its ECR login, is for the local `docker` build mode; DescribeImages finds tags already built.
        Statement(Sid="EcrLogin", Effect=Allow, Action=[ecr.GetAuthorizationToken], Resource=["*"]),
        Statement(Sid="PushImages", Effect=Allow, Action=PUSH_ACTIONS, Resource=repository_arns(repositories)),
    )  # fmt: skip
    return t.add_resource(
        Role(logical_id("ImagePublisherRole"), RoleName=naming.IMAGE_PUBLISHER_ROLE,
             Description="Assumed from the admin account by `deploy.py images` to publish the images",
             AssumeRolePolicyDocument=trust,
             Policies=[RolePolicy(PolicyName="publish-images", PolicyDocument=permissions)])
    )  # fmt: skip


def add_image_build_outputs(t: Template, image_build: ImageBuild) -> list[Output]:
    """What `deploy.py images` needs; it reads them cross-account through the reader role."""
    outputs = [
        Output("ImageBuildBucketName", Description="Bucket the build contexts are uploaded to",
               Value=Ref(image_build.bucket)),
        Output("ImageBuildProjectName", Description="CodeBuild project that builds one image per build",
               Value=Ref(image_build.project)),
        Output("ImagePublisherRoleArn", Description="Role `deploy.py images` assumes from the admin account",
               Value=GetAtt(image_build.publisher, "Arn")),
    ]  # fmt: skip
    t.add_output(outputs)
    return outputs
