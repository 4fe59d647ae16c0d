"""One RStudio instance in its account and region: KMS key, VPC, roles the data account trusts, event bus access.

StackSet `rstudio-<instance>`. This module holds the instance-side halves of the contracts the data account's
template (generator/stacks/instance_data.py) relies on: the fixed role names it trusts and the bus its forwarding rule
targets. The instance's own resource groups are built by the modules of generator/instance/ (the network so far).
Everything else runs against ${AWS::AccountId}/${AWS::Region}, so the template holds no instance account id.
"""

from __future__ import annotations

from typing import NamedTuple

import awacs.events
import awacs.kms
import awacs.s3
import awacs.sts
from awacs.aws import ArnLike, Condition, Principal, StringEquals
from troposphere import GetAtt, Output, Ref, Sub, Template
from troposphere.events import EventBusPolicy
from troposphere.iam import Policy as RolePolicy
from troposphere.iam import Role
from troposphere.kms import Alias, Key

from generator import naming
from generator.common import new_template, retain
from generator.iam import (
    DATASYNC_BUCKET_ACTIONS,
    DATASYNC_OBJECT_ACTIONS,
    LOGS_KEY_ACTIONS,
    Allow,
    Statement,
    account_key_statements,
    account_root,
    arn,
    document,
    kms_actions,
    regional_arn,
    role_arn,
    service_trust,
)
from generator.instance.network import add_network
from stacksets.config import Config
from stacksets.naming import instance_stackset


class Roles(NamedTuple):
    rstudio_task: Role
    datasync: Role


def build(cfg: Config, instance: str) -> Template:
    if instance not in cfg.instances:
        raise ValueError(f"unknown instance {instance!r}; the config has {', '.join(sorted(cfg.instances))}")
    t = new_template(__doc__)
    key = add_key(t, instance)
    add_network(t, instance, cfg.instances[instance], key)
    roles = Roles(add_rstudio_task_role(t, cfg, instance), add_datasync_role(t, cfg, instance))
    add_event_bus_policy(t, cfg, instance)
    add_outputs(t, key, roles)
    return t


def add_key(t: Template, instance: str) -> Key:
    """The instance's customer managed key: logs now, EFS and secrets (granted through IAM) later."""
    key_policy = document(
        *account_key_statements(),
        # "*" in a key policy means this key. The encryption context pins use to log groups of this account and region.
        Statement(
            Sid="CloudWatchLogsOfThisAccount",
            Effect=Allow,
            Principal=Principal("Service", Sub("logs.${AWS::Region}.amazonaws.com")),
            Action=kms_actions(LOGS_KEY_ACTIONS),
            Resource=["*"],
            Condition=Condition(ArnLike("kms:EncryptionContext:aws:logs:arn", regional_arn("logs", "log-group:*"))),
        ),
    )  # fmt: skip
    key = t.add_resource(
        retain(
            Key(
                naming.logical_id("InstanceKey"),
                Description=f"RStudio instance {instance}: log groups, file system and secrets",
                EnableKeyRotation=True,
                KeyPolicy=key_policy,
            )
        )
    )
    t.add_resource(Alias(naming.logical_id("InstanceKeyAlias"), AliasName=f"alias/{instance_stackset(instance)}",
                         TargetKeyId=Ref(key)))  # fmt: skip
    return key


def add_rstudio_task_role(t: Template, cfg: Config, instance: str) -> Role:
    """The RStudio containers' role. The data account's Athena role trusts exactly this name, so the name is fixed."""
    athena_role = role_arn(cfg.accounts.data, naming.role_name(instance, naming.ATHENA_ROLE))
    return t.add_resource(
        Role(
            naming.logical_id("RStudioTaskRole"),
            RoleName=naming.role_name(instance, naming.RSTUDIO_TASK_ROLE),
            Description=f"RStudio tasks of instance {instance}; every R session can use it, so it grants little",
            # ECS documents the source ARN for task roles as any ECS ARN of the account and region.
            AssumeRolePolicyDocument=service_trust("ecs-tasks.amazonaws.com", regional_arn("ecs", "*")),
            Policies=[
                RolePolicy(
                    PolicyName="assume-data-account-athena-role",
                    # The Athena role's trust also allows SetSourceIdentity, so a session can carry the R user's
                    # name into CloudTrail. The user's own code sets it: attribution, not authentication.
                    PolicyDocument=document(
                        Statement(Effect=Allow, Action=[awacs.sts.AssumeRole, awacs.sts.SetSourceIdentity],
                                  Resource=[athena_role])
                    ),
                )
            ],
        )
    )


def add_datasync_role(t: Template, cfg: Config, instance: str) -> Role:
    """The role DataSync's S3 location uses to read the instance's upload bucket in the data account."""
    data_region = cfg.default_region  # the data StackSet deploys to the default region
    bucket_name = naming.upload_bucket_name(instance, cfg.accounts.data, data_region)
    bucket = arn("s3", bucket_name)
    prefixes = [arn("s3", f"{bucket_name}/{prefix}/*") for prefix in naming.UPLOAD_PREFIXES]
    permissions = document(
        Statement(Sid="UploadBucket", Effect=Allow, Resource=[bucket], Action=list(DATASYNC_BUCKET_ACTIONS)),
        # The documented S3 location set, on the two upload prefixes only.
        Statement(Sid="UploadObjects", Effect=Allow, Resource=prefixes, Action=list(DATASYNC_OBJECT_ACTIONS)),
        # The data key's id is created in the data account and not known here; any key of that account, and only
        # when S3 in the data region uses it on the role's behalf (the bucket pins which key that is).
        Statement(Sid="UploadBucketKey", Effect=Allow,
                  Resource=[arn("kms", "key/*", region=data_region, account=cfg.accounts.data)],
                  Action=[awacs.kms.Decrypt, awacs.kms.DescribeKey],
                  Condition=Condition(StringEquals("kms:ViaService", f"s3.{data_region}.amazonaws.com"))),
    )  # fmt: skip
    return t.add_resource(
        Role(
            naming.logical_id("DataSyncRole"),
            RoleName=naming.role_name(instance, naming.DATASYNC_ROLE),
            Description=f"DataSync S3 location of instance {instance}: reads the data account's upload bucket",
            AssumeRolePolicyDocument=service_trust(
                "datasync.amazonaws.com", regional_arn("datasync", "task/*"), regional_arn("datasync", "location/*")
            ),
            Policies=[RolePolicy(PolicyName="read-upload-bucket", PolicyDocument=permissions)],
        )
    )


def add_event_bus_policy(t: Template, cfg: Config, instance: str) -> EventBusPolicy:
    """Lets the data account's instant/ forwarding rule deliver to this account's default bus."""
    statement = Statement(
        Effect=Allow,
        Principal=Principal("AWS", account_root(cfg.accounts.data)),
        Action=[awacs.events.PutEvents],
        Resource=[regional_arn("events", "event-bus/default")],
    )
    return t.add_resource(
        EventBusPolicy(
            naming.logical_id("DataAccountEventBusPolicy"),
            EventBusName="default",
            # Several instances may share an account and its bus; each owns one statement, named after it.
            StatementId=f"{instance_stackset(instance)}-data-account",
            Statement=statement.JSONrepr(),
        )
    )


def add_outputs(t: Template, key: Key, roles: Roles) -> list[Output]:
    """What the orchestrator and later readers of the stack need; no exports, nothing in the account imports them."""
    outputs = [
        Output("KeyArn", Description="Instance KMS key", Value=GetAtt(key, "Arn")),
        Output("RStudioTaskRoleArn", Description="RStudio task role", Value=GetAtt(roles.rstudio_task, "Arn")),
        Output("DataSyncRoleArn", Description="DataSync S3 location role", Value=GetAtt(roles.datasync, "Arn")),
    ]
    return t.add_output(outputs)
