"""What every ECS task of the instance shares: image references, log groups, execution roles and ECS Exec rights."""

from __future__ import annotations

import awacs.ecr
import awacs.kms
import awacs.logs
import awacs.secretsmanager
import awacs.ssmmessages
from troposphere import AWSHelperFn, GetAtt, Join, Parameter, Ref, Select, Split, Sub, Template
from troposphere.ecs import LogConfiguration
from troposphere.iam import Policy as RolePolicy
from troposphere.iam import Role
from troposphere.logs import LogGroup

from generator.common import retain
from generator.iam import Allow, Statement, arn, document, regional_arn, service_trust
from stacksets.config import Config

# Pinned rather than LATEST: a platform change then arrives with a reviewed template change, not on a task restart.
FARGATE_PLATFORM_VERSION = "1.4.0"


def image(cfg: Config, repository: str, tag: str) -> Sub:
    """An image in the central account's ECR (default region), by immutable tag: what runs is what was reviewed."""
    registry = f"{cfg.accounts.central}.dkr.ecr.{cfg.default_region}.${{AWS::URLSuffix}}"
    return Sub(f"{registry}/{repository}:{tag}")


def awslogs(log_group: LogGroup, stream_prefix: str) -> LogConfiguration:
    return LogConfiguration(LogDriver="awslogs", Options={
        "awslogs-group": Ref(log_group), "awslogs-region": Ref("AWS::Region"), "awslogs-stream-prefix": stream_prefix})


def repository_arn(cfg: Config, repository: str) -> Sub:
    return arn("ecr", f"repository/{repository}", region=cfg.default_region, account=cfg.accounts.central)


def stack_log_group_name(name: str) -> Join:
    """`<name>/<this stack's id>`: log groups outlive the stack (RetainExceptOnCreate), so a rebuilt instance could
    not take the same name, and its logs sit next to those of the stack before it under one prefix."""
    return Join("/", [name, Select(2, Split("/", Ref("AWS::StackId")))])


def add_log_group(t: Template, title: str, name: str, key: Parameter, retention_days: int) -> LogGroup:
    return t.add_resource(retain(LogGroup(title, LogGroupName=stack_log_group_name(name), KmsKeyId=Ref(key),
                                          RetentionInDays=retention_days)))  # fmt: skip


def ecs_tasks_trust() -> object:
    # ECS documents the source ARN for task roles as any ECS ARN of the account and region.
    return service_trust("ecs-tasks.amazonaws.com", regional_arn("ecs", "*"))


def add_execution_role(t: Template, title: str, cfg: Config, repository: str, log_group: LogGroup, key: Parameter,
                       secrets: list[AWSHelperFn]) -> Role:  # fmt: skip
    """What ECS itself needs to start one kind of task: pull its image, write its log group, read its own secrets."""
    statements = [
        # GetAuthorizationToken has no resource-level permissions: IAM accepts only "*" for it.
        Statement(Sid="EcrLogin", Effect=Allow, Action=[awacs.ecr.GetAuthorizationToken], Resource=["*"]),
        Statement(Sid="PullImage", Effect=Allow, Resource=[repository_arn(cfg, repository)],
                  Action=[awacs.ecr.BatchCheckLayerAvailability, awacs.ecr.BatchGetImage,
                          awacs.ecr.GetDownloadUrlForLayer]),
        Statement(Sid="WriteLogs", Effect=Allow, Action=[awacs.logs.CreateLogStream, awacs.logs.PutLogEvents],
                  Resource=[Sub("${Group}:*", Group=GetAtt(log_group, "Arn"))]),
    ]  # fmt: skip
    if secrets:
        statements += [
            Statement(Sid="ReadOwnSecrets", Effect=Allow, Action=[awacs.secretsmanager.GetSecretValue],
                      Resource=list(secrets)),
            Statement(Sid="DecryptOwnSecrets", Effect=Allow, Action=[awacs.kms.Decrypt],
                      Resource=[Ref(key)]),
        ]  # fmt: skip
    return t.add_resource(Role(title, AssumeRolePolicyDocument=ecs_tasks_trust(),
                               Policies=[RolePolicy(PolicyName="start-task", PolicyDocument=document(*statements))]))


def add_exec_task_role(t: Template, title: str, description: str, exec_log_group: LogGroup, key: Parameter,
                       **name: str) -> Role:  # fmt: skip
    """A task role whose only rights are ECS Exec's: for tasks that need no AWS access of their own. `RoleName` only
    where another template names the role."""
    return t.add_resource(Role(title, Description=description, AssumeRolePolicyDocument=ecs_tasks_trust(), **name,
                               Policies=[RolePolicy(PolicyName="ecs-exec", PolicyDocument=document(
                                   *ecs_exec_statements(exec_log_group, key)))]))  # fmt: skip


def ecs_exec_statements(exec_log_group: LogGroup, key: Parameter) -> list[Statement]:
    """Task-role rights ECS Exec needs: the SSM message channels, the session log group and the session key."""
    return [
        # The ssmmessages channel actions have no resource-level permissions.
        Statement(Sid="EcsExecChannels", Effect=Allow, Resource=["*"],
                  Action=[awacs.ssmmessages.CreateControlChannel, awacs.ssmmessages.CreateDataChannel,
                          awacs.ssmmessages.OpenControlChannel, awacs.ssmmessages.OpenDataChannel]),
        Statement(Sid="EcsExecSessionLogs", Effect=Allow, Resource=[Sub("${Group}:*", Group=GetAtt(exec_log_group,
                                                                                                  "Arn"))],
                  Action=[awacs.logs.CreateLogStream, awacs.logs.PutLogEvents, awacs.logs.DescribeLogStreams]),
        Statement(Sid="EcsExecDescribeLogGroups", Effect=Allow, Action=[awacs.logs.DescribeLogGroups],
                  Resource=[regional_arn("logs", "log-group:*")]),
        Statement(Sid="EcsExecSessionKey", Effect=Allow, Action=[awacs.kms.Decrypt], Resource=[Ref(key)]),
    ]  # fmt: skip

