"""rstudio-fargate instance storage: what holds one instance's data in its own account, kept when compute goes.

Deployed by the `rstudio-<instance>-storage` StackSet to the instance's account and region, before the instance
StackSet (`rstudio-<instance>`, the compute: VPC, ALB, services), which `deploy.py destroy` removes and rebuilds
while this one stays. It holds:
- the instance's KMS key (the compute's log groups, dead-letter queue, alarm topic and ECS Exec sessions use it too);
- the EFS file system with the users' homes, the Shiny apps and the sync folders, and its guardrail policy; the
  mount targets and access points are compute (pointers into the file system, rebuilt with the VPC);
- the users' login passwords, each RStudio server's secure-cookie key and the bastion's SSH key secret, with the
  names admins and the welcome e-mail look them up by.
The compute stack receives these as parameters the orchestrator reads from this stack's outputs, rather than through
exports: an export cannot be removed while a stack imports it, so removing a user would fail here before the
compute stack had dropped the user. Everything is kept on stack deletion (`deploy.py destroy --data` names it) but
deleted when a first create rolls back, when nothing can hold data yet (DeletionPolicy RetainExceptOnCreate).
"""

from __future__ import annotations

from typing import NamedTuple

from awacs.aws import ArnLike, ArnNotEquals, Bool, Condition, Null, PolicyDocument, Principal, StringEquals
from troposphere import GetAtt, Join, Output, Ref, Sub, Tags, Template
from troposphere.efs import BackupPolicy, FileSystem, LifecyclePolicy
from troposphere.kms import Alias, Key
from troposphere.secretsmanager import GenerateSecretString, Secret

from generator import naming
from generator.common import new_template, retain
from generator.iam import (
    LOGS_KEY_ACTIONS,
    Allow,
    Deny,
    Statement,
    account_key_statements,
    dead_letter_key_statement,
    document,
    kms_actions,
    regional_arn,
    role_arn,
)
from generator.instance.alarms import alarm_source_arn
from generator.instance.bastion import ssh_key_secret_name
from generator.instance.capacity import grant_key_to_auto_scaling
from generator.instance.servers import rstudio_servers
from generator.instance.storage import CLIENT_ACTIONS
from stacksets.config import Config, LaunchType
from stacksets.naming import (
    BASTION_KEY_SECRET,
    COOKIE_KEY_SECRETS,
    FILE_SYSTEM_ID,
    KEY_ARN,
    PASSWORD_SECRETS,
    instance_stackset,
)

PASSWORD_LENGTH = 24
COOKIE_KEY_LENGTH = 64



class Storage(NamedTuple):
    key: Key
    file_system: FileSystem
    passwords: dict[str, Secret]
    cookie_keys: dict[str, Secret]
    bastion_key: Secret | None


def build(cfg: Config, instance: str) -> Template:
    if instance not in cfg.instances:
        raise ValueError(f"unknown instance {instance!r}; the config has {', '.join(sorted(cfg.instances))}")
    t = new_template(__doc__)
    key = add_key(t, instance)
    if cfg.instances[instance].rstudio.launch_type is LaunchType.ec2:
        grant_key_to_auto_scaling(key)
    file_system = add_file_system(t, cfg, instance, key)
    passwords, cookie_keys = add_rstudio_secrets(t, cfg, instance, key)
    bastion_key = add_bastion_key_secret(t, instance, key) if cfg.instances[instance].bastion.enabled else None
    add_outputs(t, Storage(key, file_system, passwords, cookie_keys, bastion_key))
    return t


def alarm_key_statement(instance: str) -> Statement:
    """CloudWatch publishes an alarm to the instance's topic (encrypted with this key) only when it may generate and
    decrypt data keys (SNS developer guide, "Enable compatibility between event sources from AWS services and
    encrypted topics"); only for this account's alarms of this instance (alarm names in generator/instance/alarms.py).
    The DataSync failure rule's publishing is covered by the EventBridge statement (dead_letter_key_statement)."""
    return Statement(Sid="CloudWatchAlarmsOfThisInstance", Effect=Allow,
                     Principal=Principal("Service", "cloudwatch.amazonaws.com"),
                     Action=kms_actions(("Decrypt", "GenerateDataKey*")), Resource=["*"],
                     Condition=Condition([StringEquals("aws:SourceAccount", Ref("AWS::AccountId")),
                                          ArnLike("aws:SourceArn", alarm_source_arn(instance))]))  # fmt: skip


def password_users(cfg: Config, instance: str) -> list[str]:
    """Every Linux user with a login password, in the order of the PasswordSecretArns list."""
    return sorted({user for server in rstudio_servers(cfg, instance) for user in server.users})


def add_key(t: Template, instance: str) -> Key:
    """The instance's customer managed key: file system, secrets, and the compute's logs and queues."""
    key_policy = document(
        *account_key_statements(),
        dead_letter_key_statement(),
        # "*" in a key policy means this key. The encryption context pins use to log groups of this account and region.
        Statement(
            Sid="CloudWatchLogsOfThisAccount",
            Effect=Allow,
            Principal=Principal("Service", Sub("logs.${AWS::Region}.amazonaws.com")),
            Action=kms_actions(LOGS_KEY_ACTIONS),
            Resource=["*"],
            Condition=Condition(ArnLike("kms:EncryptionContext:aws:logs:arn", regional_arn("logs", "log-group:*"))),
        ),
        alarm_key_statement(instance),
    )  # fmt: skip
    key = t.add_resource(retain(Key(
        naming.logical_id("InstanceKey"), Description=f"RStudio instance {instance}: file system, secrets and logs",
        EnableKeyRotation=True, KeyPolicy=key_policy,
    )))  # fmt: skip
    t.add_resource(Alias(naming.logical_id("InstanceKeyAlias"), AliasName=f"alias/{instance_stackset(instance)}",
                         TargetKeyId=Ref(key)))  # fmt: skip
    return key


def mounting_roles(cfg: Config, instance: str) -> list[str]:
    """Names of the compute roles that mount the file system: each RStudio server's, Shiny's (only roles the compute
    stack creates: without Shiny, a role of that name made later by anyone else in the account must not mount) and
    DataSync's."""
    rstudio = [server.task_role_name(instance) for server in rstudio_servers(cfg, instance)]
    others = ([naming.SHINY_TASK_ROLE] if cfg.instances[instance].shiny.enabled else []) + [naming.DATASYNC_EFS_ROLE]
    return rstudio + [naming.role_name(instance, role) for role in others]


def file_system_policy(cfg: Config, instance: str) -> PolicyDocument:
    """Guardrails only; the grants are the compute roles' identity policies (generator/instance/storage.py). The roles
    are named, not referenced: they belong to the compute stack, which may not exist (yet, or any more).
    No statement here keeps one user's role off another's home: that would have to name the home's access point,
    which the compute stack creates on this file system, and a policy here naming it would make this stack wait for
    the compute stack that waits for it (CloudFormation has no separate file-system-policy resource the compute stack
    could own). The per-user roles' grants name only their own home instead."""
    everyone = Principal("AWS", "*")
    return document(
        Statement(Sid="DenyInsecureTransport", Effect=Deny, Principal=everyone, Action=CLIENT_ACTIONS,
                  Condition=Condition(Bool("aws:SecureTransport", "false"))),
        Statement(Sid="DenyMountsBypassingAccessPoints", Effect=Deny, Principal=everyone, Action=CLIENT_ACTIONS,
                  Condition=Condition(Null("elasticfilesystem:AccessPointArn", "true"))),
        # Also refuses anonymous (non-IAM) mounts: they carry no principal ARN.
        Statement(Sid="DenyAllButTheInstanceRoles", Effect=Deny, Principal=everyone, Action=CLIENT_ACTIONS,
                  Condition=Condition(ArnNotEquals("aws:PrincipalArn", [
                      role_arn("${AWS::AccountId}", role) for role in mounting_roles(cfg, instance)]))),
    )  # fmt: skip


def add_file_system(t: Template, cfg: Config, instance: str, key: Key) -> FileSystem:
    return t.add_resource(retain(FileSystem(
        "FileSystem", Encrypted=True, KmsKeyId=GetAtt(key, "Arn"), BackupPolicy=BackupPolicy(Status="ENABLED"),
        # Data untouched for a month moves to Infrequent Access; the first read brings a file back.
        LifecyclePolicies=[LifecyclePolicy(TransitionToIA="AFTER_30_DAYS"),
                           LifecyclePolicy(TransitionToPrimaryStorageClass="AFTER_1_ACCESS")],
        # Elastic throughput: package installs and DataSync bursts need no credits that idle homes would have to earn.
        PerformanceMode="generalPurpose", ThroughputMode="elastic",
        FileSystemPolicy=file_system_policy(cfg, instance).JSONrepr(),
        FileSystemTags=Tags(Name=f"rstudio-{instance}"),
    )))  # fmt: skip


def _generated(t: Template, title: str, name: str, description: str, length: int, key: Key) -> Secret:
    """Letters and digits only: the values pass through ECS environment injection, chpasswd and shell scripts in the
    image, where quotes, colons or backslashes would break or weaken them (24 of 62 symbols are ~143 bits)."""
    return t.add_resource(retain(Secret(
        title, Name=name, Description=description, KmsKeyId=GetAtt(key, "Arn"),
        GenerateSecretString=GenerateSecretString(PasswordLength=length, ExcludePunctuation=True,
                                                  RequireEachIncludedType=True),
    )))  # fmt: skip


def add_rstudio_secrets(t: Template, cfg: Config, instance: str, key: Key) -> tuple[dict[str, Secret],
                                                                                      dict[str, Secret]]:  # fmt: skip
    """A login password per Linux user and a secure-cookie key per RStudio server, generated by Secrets Manager at
    deploy time so no template, parameter or log holds them. The cookie key must outlive every task (or each restart
    logs everybody out) and differ per server (or a cookie from one user's server opens another's). No rotation:
    ECS reads secrets only when a task starts, so rotating would end every R session."""
    passwords = {
        user: _generated(t, naming.logical_id(user, "Password"), naming.user_password_secret_name(instance, user),
                         f"RStudio login password of {user} on instance {instance}", PASSWORD_LENGTH, key)
        for user in password_users(cfg, instance)
    }  # fmt: skip
    cookie_keys = {
        server.key: _generated(t, server.id("CookieKey"), naming.cookie_key_secret_name(instance, server.name),
                               f"Secure-cookie key of {server.host}: signs its login cookies", COOKIE_KEY_LENGTH, key)
        for server in rstudio_servers(cfg, instance)
    }  # fmt: skip
    return passwords, cookie_keys


def add_bastion_key_secret(t: Template, instance: str, key: Key) -> Secret:
    # No rotation schedule: a public key is replaced by its owner, not rotated by a Lambda.
    return t.add_resource(retain(Secret(
        "BastionSshKeySecret", Name=ssh_key_secret_name(instance), KmsKeyId=GetAtt(key, "Arn"),
        Description=f"SSH public key of the admin of RStudio instance {instance}'s bastion; created as a random "
                    "placeholder, replaced by the platform team (see generator/instance/bastion.py)",
        # A placeholder that is certainly not a public key; only the platform team's put-secret-value makes it one.
        GenerateSecretString=GenerateSecretString(PasswordLength=32, ExcludePunctuation=True),
    )))  # fmt: skip


def add_outputs(t: Template, storage: Storage) -> list[Output]:
    outputs = [
        Output(KEY_ARN, Description="Instance KMS key", Value=GetAtt(storage.key, "Arn")),
        Output(FILE_SYSTEM_ID, Description="The instance's file system", Value=Ref(storage.file_system)),
        Output(PASSWORD_SECRETS, Description="Login password secrets, one per user in sorted order",
               Value=Join(",", [Ref(secret) for _, secret in sorted(storage.passwords.items())])),
        Output(COOKIE_KEY_SECRETS, Description="Secure-cookie key secrets, one per RStudio server",
               Value=Join(",", [Ref(secret) for secret in storage.cookie_keys.values()])),
    ]
    if storage.bastion_key is not None:
        outputs.append(Output(BASTION_KEY_SECRET, Description="The bastion admin's SSH public key secret",
                              Value=Ref(storage.bastion_key)))  # fmt: skip
    return t.add_output(outputs)
