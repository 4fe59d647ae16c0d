"""DataSync from the data account's upload bucket to EFS: an hourly task, an instant task and the Lambda that starts it.

Both tasks copy one upload prefix (`hourly/`, `instant/`) onto its sync access point, which the RStudio and Shiny
tasks mount read-only under /s3_data_sync/. The data account forwards its `instant/` object-created events to this
account's default bus; a rule hands them to the trigger Lambda, which starts the instant task with include filters
for exactly the new keys.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import awacs.datasync
import awacs.kms
import awacs.logs
import awacs.sqs
import awacs.sts
from awacs.aws import ArnEquals, Condition, Principal
from troposphere import AWSObject, GetAtt, Parameter, Ref, Sub, Template
from troposphere.awslambda import (
    Code,
    DeadLetterConfig,
    Environment,
    EventInvokeConfig,
    Function,
    LoggingConfig,
    Permission,
)
from troposphere.datasync import Ec2Config, LocationEFS, LocationS3, Options, S3Config, Task, TaskSchedule
from troposphere.events import DeadLetterConfig as RuleDeadLetterConfig
from troposphere.events import RetryPolicy, Rule, Target
from troposphere.iam import Policy as RolePolicy
from troposphere.iam import Role
from troposphere.logs import LogGroup
from troposphere.sqs import Queue, QueuePolicy

from generator import naming
from generator.common import skip_checkov
from generator.iam import Allow, Statement, arn, document
from generator.instance.network import Network
from generator.instance.storage import HOURLY_SYNC, INSTANT_UPLOAD, Storage
from generator.instance.tasks import add_log_group
from stacksets.config import Config
from stacksets.naming import instance_stackset

HANDLER = Path(__file__).resolve().parents[2] / "lambda_src" / "datasync_trigger" / "handler.py"
INLINE_CODE_LIMIT = 4096  # bytes CloudFormation accepts in Code.ZipFile
# Upload prefix -> the Storage access point it lands on.
SYNCS = {"hourly": HOURLY_SYNC, "instant": INSTANT_UPLOAD}
DEAD_LETTER_RETENTION_SECONDS = 14 * 24 * 3600  # the SQS maximum: time to notice and replay

# Deliberate task options (DataSync API "Options"):
OPTIONS = Options(
    OverwriteMode="ALWAYS",  # a re-uploaded object replaces the copy; the sync folders are read-only for users
    PreserveDeletedFiles="PRESERVE",  # an object expiring or deleted in S3 never deletes a file on EFS
    TransferMode="CHANGED",  # only what differs from EFS: the hourly run stays cheap as the prefix grows
    VerifyMode="ONLY_FILES_TRANSFERRED",  # checksum what was copied, without rescanning the whole destination
    TaskQueueing="ENABLED",  # instant runs with different filters queue behind each other instead of failing
    LogLevel="TRANSFER",  # one log line per file: "where is my upload" has an answer
    # S3 objects carry no POSIX metadata, so these (DataSync's defaults) give the documented result: files 0644 and
    # directories 0755, owned by 65534:65534, i.e. readable by every user and writable by none. NONE would leave
    # owner and mode to however DataSync, mounting as root through an access point that enforces no user, creates them.
    PosixPermissions="PRESERVE",
    Uid="INT_VALUE",
    Gid="INT_VALUE",
)


class DataSync(NamedTuple):
    hourly_task: Task
    instant_task: Task
    log_group: LogGroup
    trigger: Function
    rule: Rule
    dead_letters: Queue


def add_datasync(t: Template, cfg: Config, instance: str, network: Network, storage: Storage, key: Parameter,
                 datasync_s3_role: Role) -> DataSync:  # fmt: skip
    settings = cfg.instances[instance]
    log_group = add_task_logs(t, instance, key, settings.logs.retention_days)
    tasks = {}
    for prefix, access_point in SYNCS.items():
        source = add_s3_location(t, cfg, instance, prefix, datasync_s3_role)
        destination = add_efs_location(t, prefix, network, storage, storage.access_points[access_point])
        schedule = settings.datasync.schedule if prefix == "hourly" else None
        tasks[prefix] = add_task(t, instance, prefix, source, destination, log_group, schedule)
    dead_letters = add_dead_letter_queue(t, key)
    trigger = add_trigger_function(t, cfg, instance, key, tasks["instant"], dead_letters)
    rule = add_trigger_rule(t, cfg, instance, trigger, dead_letters)
    return DataSync(tasks["hourly"], tasks["instant"], log_group, trigger, rule, dead_letters)


def upload_bucket(cfg: Config, instance: str) -> str:
    # The data StackSet deploys to the default region, whatever region the instance runs in.
    return naming.upload_bucket_name(instance, cfg.accounts.data, cfg.default_region)


def add_task_logs(t: Template, instance: str, key: Parameter, retention_days: int) -> LogGroup:
    """TRANSFER-level task logs. DataSync writes them under the account's one resource policy for all instances'
    DataSync log groups (generator/stacks/logs.py, the rstudio-logs StackSet this one depends on)."""
    return add_log_group(t, "DataSyncLogGroup", f"/rstudio/{instance}/datasync", key, retention_days)


def add_s3_location(t: Template, cfg: Config, instance: str, prefix: str, role: Role) -> LocationS3:
    """One upload prefix of the data account's bucket, read through the role that bucket's policy trusts."""
    return t.add_resource(
        LocationS3(naming.logical_id("DataSync", prefix, "S3Location"), Subdirectory=f"/{prefix}/",
                   S3BucketArn=arn("s3", upload_bucket(cfg, instance)),
                   S3Config=S3Config(BucketAccessRoleArn=GetAtt(role, "Arn")))
    )  # fmt: skip


def add_efs_location(t: Template, prefix: str, network: Network, storage: Storage,
                     access_point: AWSObject) -> LocationEFS:  # fmt: skip
    """The sync access point, reached over TLS with the DataSync EFS role and its mount grant."""
    # Creating the location needs a mount target in the subnet's AZ; mounting needs the role's grant.
    depends = [target.title for target in storage.mount_targets] + [storage.grants["datasync"].title]
    group = storage.datasync_security_group
    # DataSync (agentless for EFS) only places its network interfaces in this subnet to mount the file system; one
    # private subnet with a mount target in its AZ is all it takes, and no user traffic depends on it.
    ec2 = Ec2Config(
        SubnetArn=Sub("arn:${AWS::Partition}:ec2:${AWS::Region}:${AWS::AccountId}:subnet/${Subnet}",
                      Subnet=Ref(network.private_subnets[0])),
        SecurityGroupArns=[Sub("arn:${AWS::Partition}:ec2:${AWS::Region}:${AWS::AccountId}:security-group/${Group}",
                               Group=GetAtt(group, "GroupId"))],
    )  # fmt: skip
    return t.add_resource(
        LocationEFS(naming.logical_id("DataSync", prefix, "EfsLocation"),
                    EfsFilesystemArn=storage.file_system.arn, AccessPointArn=GetAtt(access_point, "Arn"),
                    InTransitEncryption="TLS1_2", FileSystemAccessRoleArn=GetAtt(storage.datasync_role, "Arn"),
                    Subdirectory="/", Ec2Config=ec2, DependsOn=depends)
    )  # fmt: skip


def add_task(t: Template, instance: str, prefix: str, source: LocationS3, destination: LocationEFS,
             log_group: LogGroup, schedule: str | None) -> Task:  # fmt: skip
    extra = {"Schedule": TaskSchedule(ScheduleExpression=schedule, Status="ENABLED")} if schedule else {}
    return t.add_resource(
        Task(naming.logical_id("DataSync", prefix, "Task"), Name=f"{instance_stackset(instance)}-{prefix}",
             SourceLocationArn=Ref(source), DestinationLocationArn=Ref(destination),
             CloudWatchLogGroupArn=GetAtt(log_group, "Arn"), Options=OPTIONS, **extra)
    )  # fmt: skip


def function_name(instance: str) -> str:
    # Explicit, so its log group exists (encrypted, with retention) before Lambda would create a plain one.
    return f"{instance_stackset(instance)}-datasync-trigger"


def handler_code() -> str:
    code = HANDLER.read_text(encoding="utf-8")
    if len(code.encode()) >= INLINE_CODE_LIMIT:
        raise ValueError(f"{HANDLER} exceeds the {INLINE_CODE_LIMIT} bytes CloudFormation allows inline")
    return code


def add_dead_letter_queue(t: Template, key: Parameter) -> Queue:
    """instant/ events that could not start a sync: the rule's undeliverable ones and the Lambda's failed ones. Both
    arrive as the EventBridge event in the message body, which the handler accepts back as {"Records": [...]}."""
    return t.add_resource(Queue("DataSyncTriggerDeadLetterQueue", KmsMasterKeyId=Ref(key),
                                MessageRetentionPeriod=DEAD_LETTER_RETENTION_SECONDS))  # fmt: skip


def add_trigger_function(t: Template, cfg: Config, instance: str, key: Parameter, instant_task: Task,
                         dead_letters: Queue) -> Function:  # fmt: skip
    name = function_name(instance)
    settings = cfg.instances[instance]
    log_group = add_log_group(t, "DataSyncTriggerLogGroup", f"/rstudio/{instance}/datasync-trigger", key,
                              settings.logs.retention_days)  # fmt: skip
    role = add_trigger_role(t, instance, log_group, key, instant_task, dead_letters)
    function = Function(
        "DataSyncTriggerFunction", FunctionName=name, Description=f"Starts the instant DataSync task of {instance}",
        Code=Code(ZipFile=handler_code()), Handler="index.handler", Runtime="python3.12", Architectures=["arm64"],
        Timeout=60, MemorySize=128, Role=GetAtt(role, "Arn"), KmsKeyArn=Ref(key),
        LoggingConfig=LoggingConfig(LogGroup=Ref(log_group)),
        # Lambda's own dead letters: events whose invocations kept failing (e.g. an execution kept running).
        DeadLetterConfig=DeadLetterConfig(TargetArn=GetAtt(dead_letters, "Arn")),
        Environment=Environment(Variables={"INSTANT_TASK_ARN": Ref(instant_task), "EXPECTED_ACCOUNT": cfg.accounts.data,
                                           "EXPECTED_BUCKET": upload_bucket(cfg, instance), "PREFIX": "instant/"}),
    )  # fmt: skip
    skip_checkov(
        function,
        CKV_AWS_115="no reserved concurrency: Lambda keeps min(100, quota) executions unreserved, so a fresh account "
        "(quota 10) refuses any reservation; nor is a cap needed: DataSync queues an execution started while another "
        "runs (TaskQueueing; documented for executions with different filters, which instant runs have), and a start "
        "it refuses raises, so Lambda retries the event and then dead-letters it",
        CKV_AWS_117="not in a VPC: it calls only the DataSync API and reaches no VPC resource",
    )
    t.add_resource(function)
    # A raised error (execution already running) is retried twice, a minute or two apart, then dead-lettered.
    t.add_resource(EventInvokeConfig("DataSyncTriggerInvokeConfig", FunctionName=Ref(function), Qualifier="$LATEST",
                                     MaximumRetryAttempts=2, MaximumEventAgeInSeconds=3600))  # fmt: skip
    return function


def add_trigger_role(t: Template, instance: str, log_group: LogGroup, key: Parameter, instant_task: Task,
                     dead_letters: Queue) -> Role:  # fmt: skip
    """Start the instant task, write its own logs, dead-letter into its queue: nothing else. No
    ec2:DescribeNetworkInterfaces: the function is not in a VPC, and DataSync creates its network interfaces with
    its own service-linked role when the location is made, not on StartTaskExecution."""
    permissions = document(
        Statement(Sid="StartInstantTask", Effect=Allow, Action=[awacs.datasync.StartTaskExecution],
                  Resource=[Ref(instant_task)]),
        Statement(Sid="WriteOwnLogs", Effect=Allow, Action=[awacs.logs.CreateLogStream, awacs.logs.PutLogEvents],
                  Resource=[Sub("${Group}:*", Group=GetAtt(log_group, "Arn"))]),
        Statement(Sid="DeadLetters", Effect=Allow, Action=[awacs.sqs.SendMessage],
                  Resource=[GetAtt(dead_letters, "Arn")]),
        # The queue and the environment are encrypted with the instance key.
        Statement(Sid="InstanceKey", Effect=Allow, Action=[awacs.kms.Decrypt, awacs.kms.GenerateDataKey],
                  Resource=[Ref(key)]),
    )  # fmt: skip
    # No source conditions: an execution role can only be passed inside this account (iam:PassRole), and Lambda does
    # not document aws:SourceArn on the AssumeRole call it makes.
    trust = document(Statement(Effect=Allow, Principal=Principal("Service", "lambda.amazonaws.com"),
                               Action=[awacs.sts.AssumeRole]))  # fmt: skip
    return t.add_resource(
        Role("DataSyncTriggerRole", Description=f"DataSync trigger Lambda of RStudio instance {instance}",
             AssumeRolePolicyDocument=trust,
             Policies=[RolePolicy(PolicyName="start-instant-sync", PolicyDocument=permissions)])
    )  # fmt: skip


def add_trigger_rule(t: Template, cfg: Config, instance: str, function: Function, dead_letters: Queue) -> Rule:
    """Forwarded instant/ uploads on this account's default bus go to the Lambda; undeliverable ones to the queue.
    The retry policy covers delivery (e.g. Lambda throttling); errors the function raises are Lambda's to retry."""
    pattern = {
        "source": ["aws.s3"],
        "detail-type": ["Object Created"],
        "account": [cfg.accounts.data],  # forwarded events keep the account they happened in
        "detail": {"bucket": {"name": [upload_bucket(cfg, instance)]}, "object": {"key": [{"prefix": "instant/"}]}},
    }
    target = Target(Id="datasync-trigger", Arn=GetAtt(function, "Arn"),
                    RetryPolicy=RetryPolicy(MaximumRetryAttempts=20, MaximumEventAgeInSeconds=3600),
                    DeadLetterConfig=RuleDeadLetterConfig(Arn=GetAtt(dead_letters, "Arn")))  # fmt: skip
    rule = t.add_resource(Rule("DataSyncInstantRule", Description=f"instant/ uploads of RStudio instance {instance}",
                               State="ENABLED", EventPattern=pattern, Targets=[target]))  # fmt: skip
    t.add_resource(Permission("DataSyncTriggerPermission", Action="lambda:InvokeFunction", FunctionName=Ref(function),
                              Principal="events.amazonaws.com", SourceArn=GetAtt(rule, "Arn")))  # fmt: skip
    sender = Statement(Effect=Allow, Principal=Principal("Service", "events.amazonaws.com"),
                       Action=[awacs.sqs.SendMessage], Resource=[GetAtt(dead_letters, "Arn")],
                       Condition=Condition(ArnEquals("aws:SourceArn", GetAtt(rule, "Arn"))))  # fmt: skip
    t.add_resource(QueuePolicy("DataSyncTriggerDeadLetterQueuePolicy", Queues=[Ref(dead_letters)],
                               PolicyDocument=document(sender)))  # fmt: skip
    return rule
