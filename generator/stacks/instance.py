"""One RStudio instance: VPC, ALB with TLS and WAF, RStudio and Shiny on ECS, and the roles the data account trusts.

StackSet `rstudio-<instance>`: the instance's compute, everything `deploy.py destroy` removes and a rebuild
re-creates. What holds data (key, file system, secrets) is the storage StackSet's (generator/stacks/storage.py),
passed in as parameters. This module holds the instance-side halves of the contracts the data account's
template (generator/stacks/instance_data.py) relies on: the fixed role names it trusts and the bus its forwarding rule
targets. The instance's own resource groups (network, ingress, DNS, WAF, services) are built by the modules of
generator/instance/, called here in reading order; the alarms (generator/instance/alarms.py) come last and watch
what the others made.
Everything else runs against ${AWS::AccountId}/${AWS::Region}, so the template holds no instance account id.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import awacs.events
import awacs.kms
import awacs.s3
import awacs.sts
from awacs.aws import Condition, Principal, StringEquals
from troposphere import GetAtt, Output, Ref, Template
from troposphere.events import EventBusPolicy
from troposphere.iam import Policy as RolePolicy
from troposphere.iam import Role

from generator import naming
from generator.common import new_template
from generator.iam import (
    DATASYNC_BUCKET_ACTIONS,
    DATASYNC_OBJECT_ACTIONS,
    DATASYNC_SOURCE_ARN,
    Allow,
    Statement,
    account_root,
    arn,
    document,
    regional_arn,
    role_arn,
    service_trust,
)
from generator.instance.alarms import Monitored, add_alarms, template_functions
from generator.instance.bastion import add_bastion
from generator.instance.capacity import add_ec2_capacity
from generator.instance.cluster import add_cluster
from generator.instance.datasync import add_datasync
from generator.instance.dns import add_alias_records, add_certificates
from generator.instance.ingress import add_ingress
from generator.instance.network import add_network
from generator.instance.rstudio import add_rstudio
from generator.instance.secrets import add_stored_data
from generator.instance.security_groups import add_security_groups
from generator.instance.servers import rstudio_servers, shiny_host
from generator.instance.shiny import add_shiny, add_shiny_task_role
from generator.instance.storage import TaskRoles, add_storage
from generator.instance.waf import add_waf
from generator.instance.welcome import add_welcome_email
from stacksets.config import Config, LaunchType
from stacksets.naming import instance_stackset


class Roles(NamedTuple):
    rstudio_tasks: dict[str, Role]
    """By RStudioServer.key."""
    datasync: Role


def build(cfg: Config, instance: str, image_tags: Mapping[str, str]) -> Template:
    """`image_tags`: image name -> content-hash tag of its build context (generator/images/contexts.py)."""
    if instance not in cfg.instances:
        raise ValueError(f"unknown instance {instance!r}; the config has {', '.join(sorted(cfg.instances))}")
    settings = cfg.instances[instance]
    t = new_template(__doc__)
    stored = add_stored_data(t, cfg, instance)
    key = stored.key
    network = add_network(t, instance, settings, key)
    groups = add_security_groups(t, instance, settings, network.vpc)
    cluster = add_cluster(t, instance, key, settings.logs.retention_days)
    roles = Roles(add_rstudio_task_roles(t, cfg, instance), add_datasync_role(t, cfg, instance))
    add_event_bus_policy(t, cfg, instance)

    certificates = add_certificates(t, cfg, instance)
    ingress = add_ingress(t, cfg, instance, network, groups, certificates)
    add_alias_records(t, cfg, instance, ingress.load_balancer)
    add_waf(t, cfg, instance, ingress.load_balancer, key)

    shiny_on = settings.shiny.enabled
    shiny_role = add_shiny_task_role(t, instance, cluster, key) if shiny_on else None
    storage = add_storage(t, cfg, instance, network, groups, stored.file_system, TaskRoles(roles.rstudio_tasks,
                                                                                            shiny_role))
    datasync = add_datasync(t, cfg, instance, network, storage, key, roles.datasync)

    secrets = stored.secrets
    on_ec2 = settings.rstudio.launch_type is LaunchType.ec2
    capacity = add_ec2_capacity(t, cfg, instance, network, cluster, key) if on_ec2 else None
    rstudio = add_rstudio(t, cfg, instance, network, groups, cluster, key, roles.rstudio_tasks, secrets,
                          ingress.rstudio_target_groups, ingress.rstudio_rules, capacity, storage,
                          image_tag=image_tags["rstudio"], ssh_key=stored.bastion_key)  # fmt: skip
    shiny = None
    if shiny_on:
        shiny = add_shiny(t, cfg, instance, network, groups, cluster, key, ingress.load_balancer,
                          ingress.shiny_target_group, ingress.shiny_rule, storage, shiny_role,
                          image_tag=image_tags["shiny"], ssh_key=stored.bastion_key)  # fmt: skip
    add_welcome_email(t, cfg, instance, key, secrets, rstudio_servers(cfg, instance))
    add_bastion(t, cfg, instance, network, groups, cluster, key, stored.bastion_key, image_tag=image_tags["bastion"])
    servers = rstudio_servers(cfg, instance)
    services = {server.name: rstudio[server.key].service for server in servers}
    target_groups = {server.name: ingress.rstudio_target_groups[server.key] for server in servers}
    if shiny is not None and ingress.shiny_target_group is not None:
        services["shiny"], target_groups["shiny"] = shiny.service, ingress.shiny_target_group
    # Last, so every Lambda function of the template is there to get its alarm.
    add_alarms(t, cfg, instance, key, Monitored(
        cluster.cluster, services, ingress.load_balancer, target_groups,
        {"datasync-trigger-dead-letters": datasync.dead_letters},
        [Ref(datasync.hourly_task), Ref(datasync.instant_task)], template_functions(t)))  # fmt: skip
    add_outputs(t, cfg, instance, roles)
    return t


def add_rstudio_task_roles(t: Template, cfg: Config, instance: str) -> dict[str, Role]:
    """The RStudio containers' roles by RStudioServer.key: one for the shared server, one per server in per-user mode.
    Every R session on a server can use its role (the image hands its credentials on), so a per-user server's role
    must not mount another user's home; roles apart are what keeps them apart (grants in generator/instance/storage.py).
    The names are fixed: the data account's Athena role and the storage StackSet's file-system policy name them."""
    athena_role = role_arn(cfg.accounts.data, naming.role_name(instance, naming.ATHENA_ROLE))
    return {
        server.key: t.add_resource(Role(
            server.id("TaskRole"), RoleName=server.task_role_name(instance),
            Description=(f"RStudio tasks of instance {instance}" if server.key == "shared" else
                         f"RStudio tasks of {server.key}'s server on instance {instance}")
            + "; every R session can use it, so it grants little",
            # ECS documents the source ARN for task roles as any ECS ARN of the account and region.
            AssumeRolePolicyDocument=service_trust("ecs-tasks.amazonaws.com", regional_arn("ecs", "*")),
            Policies=[RolePolicy(
                PolicyName="assume-data-account-athena-role",
                # The Athena role's trust also allows SetSourceIdentity, so a session can carry the R user's name
                # into CloudTrail. The user's own code sets it: attribution, not authentication.
                PolicyDocument=document(Statement(Effect=Allow, Action=[awacs.sts.AssumeRole,
                                                                        awacs.sts.SetSourceIdentity],
                                                  Resource=[athena_role])),
            )],
        ))
        for server in rstudio_servers(cfg, instance)
    }  # fmt: skip


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
                "datasync.amazonaws.com", DATASYNC_SOURCE_ARN
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


def add_outputs(t: Template, cfg: Config, instance: str, roles: Roles) -> list[Output]:
    """Where users go, and what the orchestrator and later readers of the stack need; nothing in the account imports
    them, so there are no exports."""
    servers = {server.key: server for server in rstudio_servers(cfg, instance)}
    outputs = [Output(servers[key].id("TaskRoleArn"), Value=GetAtt(role, "Arn"),
                      Description="RStudio task role" if key == "shared" else f"Task role of {servers[key].host}")
               for key, role in roles.rstudio_tasks.items()]  # fmt: skip
    outputs += [
        Output("DataSyncRoleArn", Description="DataSync S3 location role", Value=GetAtt(roles.datasync, "Arn")),
    ]
    if cfg.instances[instance].shiny.enabled:
        outputs.append(Output("ShinyUrl", Description="Shiny Server", Value=f"https://{shiny_host(cfg, instance)}/"))
    outputs += [Output(server.id("Url"), Description=f"RStudio for {', '.join(server.users)}",
                       Value=f"https://{server.host}/") for server in rstudio_servers(cfg, instance)]  # fmt: skip
    return t.add_output(outputs)
