"""rstudio-fargate instance data: one instance's upload bucket, Athena workgroup, Glue database and access roles.

Deployed by the `rstudio-<instance>-data` StackSet to the data account in the default region, after `rstudio-data`
(whose bucket receives the access logs) and before the instance StackSet. One StackSet per instance keeps each
template under the 51,200-byte inline TemplateBody limit however many instances there are, and lets an instance's
data change roll out without touching the others. It holds (all named in generator/naming.py, so the instance
template can refer to them):
- an upload bucket with `hourly/` and `instant/` prefixes that the instance account's DataSync role reads; the
  bucket and key policies grant that role by name because it lives in another account and may not exist yet;
- an Athena results bucket, a workgroup that enforces its output location and encryption, a Glue database, and a
  role the instance's RStudio task roles assume for queries (short-term credentials, never access keys);
- an EventBridge rule forwarding `instant/` object-created events to the instance account's default bus, where the
  instance starts its on-demand DataSync task; undeliverable events wait in an encrypted dead-letter queue;
- optionally an SFTP server whose users land in one prefix of the upload bucket.
One KMS key per instance encrypts all of it, so each instance's data has one key policy to audit. Outputs are read
cross-account by the orchestrator, so nothing is exported.
"""

from __future__ import annotations

from typing import NamedTuple

import awacs.athena
import awacs.events
import awacs.glue
import awacs.kms
import awacs.s3
import awacs.sqs
import awacs.sts
from awacs.aws import (
    ArnEquals,
    ArnLike,
    AWSPrincipal,
    Condition,
    PolicyDocument,
    Principal,
    StringEquals,
    StringLike,
)
from troposphere import GetAtt, Output, Ref, Sub, Template
from troposphere.athena import (
    EncryptionConfiguration,
    EngineVersion,
    ResultConfiguration,
    WorkGroup,
    WorkGroupConfiguration,
)
from troposphere.events import DeadLetterConfig, Rule, Target
from troposphere.glue import Database, DatabaseInput
from troposphere.iam import Policy as RolePolicy
from troposphere.iam import Role
from troposphere.kms import Alias, Key
from troposphere.logs import LogGroup
from troposphere.s3 import (
    Bucket,
    BucketPolicy,
    EventBridgeConfiguration,
    LifecycleRule,
    LoggingConfiguration,
    NoncurrentVersionExpiration,
    NotificationConfiguration,
)
from troposphere.sqs import Queue, QueuePolicy
from troposphere.transfer import HomeDirectoryMapEntry, Server, User

from generator import naming
from generator.buckets import (
    abort_multipart,
    add_bucket_policy,
    hardened_bucket,
    object_arn,
)
from generator.common import new_template, retain, skip_checkov
from generator.iam import (
    DATASYNC_BUCKET_ACTIONS,
    DATASYNC_OBJECT_ACTIONS,
    LOGS_KEY_ACTIONS,
    Allow,
    Statement,
    account_key_statements,
    account_root,
    arn,
    conditions,
    dead_letter_key_statement,
    document,
    kms_actions,
    named_role_principal,
    regional_arn,
    role_arn,
    service_trust,
)
from generator.instance.servers import rstudio_servers
from stacksets.config import Config, PermissionModel
from stacksets.naming import instance_stackset

s3 = awacs.s3

# CreateLocationS3 checks s3:ListBucket with the credentials of whoever creates the location, here the StackSet
# execution role in the instance account (DataSync cross-account tutorial). Its name depends on the permission model.
STACKSET_EXECUTION_ROLES = {
    PermissionModel.self_managed: "AWSCloudFormationStackSetExecutionRole",
    PermissionModel.service_managed: "stacksets-exec-*",
}

ATHENA_QUERY_ACTIONS = (awacs.athena.StartQueryExecution, awacs.athena.StopQueryExecution,
                        awacs.athena.GetQueryExecution, awacs.athena.BatchGetQueryExecution,
                        awacs.athena.ListQueryExecutions, awacs.athena.GetQueryResults,
                        awacs.athena.GetQueryResultsStream, awacs.athena.GetQueryRuntimeStatistics,
                        awacs.athena.GetWorkGroup)  # fmt: skip
# The JDBC driver and DBI list metadata through Athena, which reads Glue with the caller's permissions.
ATHENA_METADATA_ACTIONS = (awacs.athena.GetDataCatalog, awacs.athena.ListDatabases, awacs.athena.GetDatabase,
                           awacs.athena.ListTableMetadata, awacs.athena.GetTableMetadata)  # fmt: skip
GLUE_READ_ACTIONS = (awacs.glue.GetDatabase, awacs.glue.GetDatabases, awacs.glue.GetTable, awacs.glue.GetTables,
                     awacs.glue.GetPartition, awacs.glue.GetPartitions, awacs.glue.BatchGetPartition)  # fmt: skip

SFTP_SECURITY_POLICY = "TransferSecurityPolicy-2024-01"
DEAD_LETTER_RETENTION_SECONDS = 14 * 24 * 3600  # the SQS maximum: time to notice and replay


class Sftp(NamedTuple):
    server: Server
    role: Role
    users: list[User]


class InstanceData(NamedTuple):
    key: Key
    upload: Bucket
    results: Bucket
    workgroup: WorkGroup
    database: Database
    athena_role: Role
    rule: Rule
    sftp: Sftp | None


def build(cfg: Config, instance: str) -> Template:
    t = new_template(__doc__)
    log_bucket = naming.access_log_bucket_name(cfg.accounts.data, cfg.default_region)
    key = add_key(t, cfg, instance)
    upload = add_upload_bucket(t, cfg, instance, key, log_bucket)
    add_upload_bucket_policy(t, cfg, instance, upload)
    results = add_results_bucket(t, cfg, instance, key, log_bucket)
    workgroup, database = add_athena(t, cfg, instance, key, results)
    athena_role = add_athena_role(t, cfg, instance, key, upload, results)
    queue = add_dead_letter_queue(t, instance, key)
    rule = add_instant_forwarding(t, cfg, instance, upload, queue)
    add_dead_letter_queue_policy(t, instance, queue, rule)
    sftp = add_sftp(t, cfg, instance, key, upload) if cfg.instances[instance].sftp.enabled else None
    add_outputs(t, instance, InstanceData(key, upload, results, workgroup, database, athena_role, rule, sftp))
    return t


def data_bucket(title: str, name: str, key: Key, rules: list[LifecycleRule], log_bucket: str) -> Bucket:
    """An instance bucket: KMS, access logs into the data account's log bucket, object events on the default bus."""
    return hardened_bucket(
        title,
        name,
        key,
        rules,
        LoggingConfiguration=LoggingConfiguration(DestinationBucketName=log_bucket, LogFilePrefix=f"{name}/"),
        NotificationConfiguration=NotificationConfiguration(
            EventBridgeConfiguration=EventBridgeConfiguration(EventBridgeEnabled=True)
        ),
    )


def add_key(t: Template, cfg: Config, instance: str) -> Key:
    """The instance's data key: both buckets, Athena results, the dead-letter queue and the SFTP log group."""
    key = t.add_resource(
        retain(Key(naming.logical_id(instance, "DataKey"), Description=f"RStudio instance {instance}: data account",
                   EnableKeyRotation=True, KeyPolicy=key_policy(cfg, instance)))
    )  # fmt: skip
    alias = f"alias/{instance_stackset(instance)}-data"
    t.add_resource(Alias(naming.logical_id(instance, "DataKeyAlias"), AliasName=alias, TargetKeyId=Ref(key)))
    return key


def key_policy(cfg: Config, instance: str) -> PolicyDocument:
    datasync, datasync_condition = named_role_principal(
        cfg.instances[instance].account, naming.role_name(instance, naming.DATASYNC_ROLE)
    )
    # In a key policy, Resource "*" means this key.
    statements = [
        *account_key_statements(),
        Statement(Sid="InstanceDataSyncReadsThroughS3", Effect=Allow, Principal=datasync, Resource=["*"],
                  Action=[awacs.kms.Decrypt, awacs.kms.DescribeKey],
                  Condition=conditions(datasync_condition,
                                       StringEquals("kms:ViaService", Sub("s3.${AWS::Region}.amazonaws.com")))),
        dead_letter_key_statement(),
    ]  # fmt: skip
    if cfg.instances[instance].sftp.enabled:
        log_group = regional_arn("logs", f"log-group:{sftp_log_group_name(instance)}")
        statements.append(
            Statement(Sid="SftpLogGroup", Effect=Allow, Resource=["*"],
                      Principal=Principal("Service", Sub("logs.${AWS::Region}.amazonaws.com")),
                      Action=kms_actions(LOGS_KEY_ACTIONS),
                      Condition=Condition(ArnEquals("kms:EncryptionContext:aws:logs:arn", log_group)))
        )  # fmt: skip
    return document(*statements)


def add_upload_bucket(t: Template, cfg: Config, instance: str, key: Key, log_bucket: str) -> Bucket:
    """Where uploads land: hourly/ (synced on the DataSync schedule) and instant/ (synced on upload)."""
    name = naming.upload_bucket_name(instance, cfg.accounts.data, cfg.default_region)
    keep_days = cfg.instances[instance].data.noncurrent_version_expiry_days
    rule = LifecycleRule(Id="expire-replaced-uploads", Status="Enabled", ExpiredObjectDeleteMarker=True,
                         NoncurrentVersionExpiration=NoncurrentVersionExpiration(NoncurrentDays=keep_days),
                         AbortIncompleteMultipartUpload=abort_multipart())  # fmt: skip
    return t.add_resource(data_bucket(naming.logical_id(instance, "UploadBucket"), name, key, [rule], log_bucket))


def add_upload_bucket_policy(t: Template, cfg: Config, instance: str, bucket: Bucket) -> BucketPolicy:
    """TLS only; the instance's DataSync role gets exactly its S3 location set, on the upload prefixes only."""
    account = cfg.instances[instance].account
    datasync, condition = named_role_principal(account, naming.role_name(instance, naming.DATASYNC_ROLE))
    prefixes = [object_arn(bucket, f"{prefix}/*") for prefix in naming.UPLOAD_PREFIXES]
    execution_role = role_arn(account, STACKSET_EXECUTION_ROLES[cfg.stacksets.permission_model])
    return add_bucket_policy(
        t,
        bucket,
        Statement(Sid="DataSyncBucket", Effect=Allow, Principal=datasync, Condition=condition,
                  Action=list(DATASYNC_BUCKET_ACTIONS), Resource=[GetAtt(bucket, "Arn")]),
        Statement(Sid="DataSyncObjects", Effect=Allow, Principal=datasync, Condition=condition,
                  Action=list(DATASYNC_OBJECT_ACTIONS), Resource=prefixes),
        Statement(Sid="DataSyncLocationCreator", Effect=Allow, Principal=AWSPrincipal(account_root(account)),
                  Action=[s3.ListBucket], Resource=[GetAtt(bucket, "Arn")],
                  Condition=Condition(ArnLike("aws:PrincipalArn", execution_role))),
    )  # fmt: skip


def add_results_bucket(t: Template, cfg: Config, instance: str, key: Key, log_bucket: str) -> Bucket:
    """Athena query output; results are re-creatable, so they expire."""
    name = naming.athena_results_bucket_name(instance, cfg.accounts.data, cfg.default_region)
    rule = LifecycleRule(Id="expire-query-results", Status="Enabled",
                         ExpirationInDays=cfg.instances[instance].data.athena_results_expiry_days,
                         NoncurrentVersionExpiration=NoncurrentVersionExpiration(NoncurrentDays=1),
                         AbortIncompleteMultipartUpload=abort_multipart())  # fmt: skip
    title = naming.logical_id(instance, "AthenaResultsBucket")
    bucket = t.add_resource(data_bucket(title, name, key, [rule], log_bucket))
    add_bucket_policy(t, bucket)
    return bucket


def add_athena(t: Template, cfg: Config, instance: str, key: Key, results: Bucket) -> tuple[WorkGroup, Database]:
    """A workgroup whose settings clients cannot override (output, encryption, scan limit) and a Glue database."""
    configuration = WorkGroupConfiguration(
        EnforceWorkGroupConfiguration=True,
        PublishCloudWatchMetricsEnabled=True,
        BytesScannedCutoffPerQuery=cfg.instances[instance].data.athena_bytes_scanned_cutoff,
        EngineVersion=EngineVersion(SelectedEngineVersion="AUTO"),
        ResultConfiguration=ResultConfiguration(
            OutputLocation=f"s3://{results.BucketName}/results/",
            ExpectedBucketOwner=Ref("AWS::AccountId"),
            EncryptionConfiguration=EncryptionConfiguration(EncryptionOption="SSE_KMS", KmsKey=GetAtt(key, "Arn")),
        ),
    )
    workgroup = t.add_resource(
        WorkGroup(naming.logical_id(instance, "AthenaWorkGroup"), Name=naming.athena_workgroup_name(instance),
                  Description=f"RStudio instance {instance}", State="ENABLED", WorkGroupConfiguration=configuration)
    )  # fmt: skip
    database = t.add_resource(
        retain(Database(naming.logical_id(instance, "GlueDatabase"), CatalogId=Ref("AWS::AccountId"),
                        DatabaseInput=DatabaseInput(Name=naming.glue_database_name(instance),
                                                    Description=f"RStudio instance {instance}")))
    )  # fmt: skip
    return workgroup, database


def add_athena_role(t: Template, cfg: Config, instance: str, key: Key, upload: Bucket, results: Bucket) -> Role:
    """Assumed by the instance's RStudio task roles (one per server): queries in this workgroup, reads of this
    database and bucket."""
    task_role, condition = named_role_principal(
        cfg.instances[instance].account, *[server.task_role_name(instance) for server in rstudio_servers(cfg, instance)]
    )
    # SetSourceIdentity lets a per-user server stamp its user on the session, so CloudTrail names who queried.
    trust = document(Statement(Effect=Allow, Principal=task_role, Condition=condition,
                               Action=[awacs.sts.AssumeRole, awacs.sts.SetSourceIdentity]))  # fmt: skip
    database = naming.glue_database_name(instance)
    glue = [regional_arn("glue", "catalog"), regional_arn("glue", f"database/{database}"),
            regional_arn("glue", f"table/{database}/*")]  # fmt: skip
    permissions = document(
        Statement(Sid="QueryInWorkGroup", Effect=Allow, Action=list(ATHENA_QUERY_ACTIONS),
                  Resource=[regional_arn("athena", f"workgroup/{naming.athena_workgroup_name(instance)}")]),
        Statement(Sid="CatalogMetadata", Effect=Allow, Action=list(ATHENA_METADATA_ACTIONS),
                  Resource=[regional_arn("athena", "datacatalog/AwsDataCatalog")]),
        Statement(Sid="GlueRead", Effect=Allow, Action=list(GLUE_READ_ACTIONS), Resource=glue),
        Statement(Sid="ListBuckets", Effect=Allow, Action=[s3.GetBucketLocation, s3.ListBucket],
                  Resource=[GetAtt(upload, "Arn"), GetAtt(results, "Arn")]),
        Statement(Sid="ReadUploads", Effect=Allow, Action=[s3.GetObject], Resource=[object_arn(upload)]),
        Statement(Sid="WriteResults", Effect=Allow, Resource=[object_arn(results)],
                  Action=[s3.GetObject, s3.PutObject, s3.AbortMultipartUpload, s3.ListMultipartUploadParts]),
        Statement(Sid="UseDataKey", Effect=Allow, Resource=[GetAtt(key, "Arn")],
                  Action=[awacs.kms.Decrypt, awacs.kms.GenerateDataKey, awacs.kms.DescribeKey]),
    )  # fmt: skip
    return t.add_resource(
        Role(naming.logical_id(instance, "AthenaRole"), RoleName=naming.role_name(instance, naming.ATHENA_ROLE),
             Description=f"Athena from RStudio instance {instance}", AssumeRolePolicyDocument=trust,
             Policies=[RolePolicy(PolicyName="athena-queries", PolicyDocument=permissions)])
    )  # fmt: skip


def add_dead_letter_queue(t: Template, instance: str, key: Key) -> Queue:
    """Forwarded events the instance bus refused (e.g. its bus policy not deployed yet), kept for replay."""
    queue = Queue(naming.logical_id(instance, "InstantDeadLetterQueue"), KmsMasterKeyId=GetAtt(key, "Arn"),
                  MessageRetentionPeriod=DEAD_LETTER_RETENTION_SECONDS)  # fmt: skip
    return t.add_resource(queue)


def add_instant_forwarding(t: Template, cfg: Config, instance: str, upload: Bucket, dead_letters: Queue) -> Rule:
    """instant/ object-created events of the upload bucket go to the instance account's default bus."""
    bus = arn("events", "event-bus/default", region=cfg.region_of(instance), account=cfg.instances[instance].account)
    role = t.add_resource(
        Role(naming.logical_id(instance, "EventForwarderRole"),
             RoleName=naming.role_name(instance, naming.EVENT_FORWARDER_ROLE),
             Description=f"Forwards instant/ uploads to the event bus of RStudio instance {instance}",
             AssumeRolePolicyDocument=service_trust("events.amazonaws.com", regional_arn("events", "rule/*")),
             Policies=[RolePolicy(PolicyName="put-events-instance-bus", PolicyDocument=document(
                 Statement(Effect=Allow, Action=[awacs.events.PutEvents], Resource=[bus])))])
    )  # fmt: skip
    pattern = {
        "source": ["aws.s3"],
        "detail-type": ["Object Created"],
        "detail": {
            "bucket": {"name": [upload.BucketName]},
            "object": {"key": [{"prefix": "instant/"}]},
        },
    }
    target = Target(Id="instance-bus", Arn=bus, RoleArn=GetAtt(role, "Arn"),
                    DeadLetterConfig=DeadLetterConfig(Arn=GetAtt(dead_letters, "Arn")))  # fmt: skip
    return t.add_resource(
        Rule(naming.logical_id(instance, "InstantUploadRule"), State="ENABLED", EventPattern=pattern,
             Description=f"instant/ uploads of RStudio instance {instance}", Targets=[target])
    )  # fmt: skip


def add_dead_letter_queue_policy(t: Template, instance: str, queue: Queue, rule: Rule) -> QueuePolicy:
    statement = Statement(Effect=Allow, Principal=Principal("Service", "events.amazonaws.com"),
                          Action=[awacs.sqs.SendMessage], Resource=[GetAtt(queue, "Arn")],
                          Condition=Condition(ArnEquals("aws:SourceArn", GetAtt(rule, "Arn"))))  # fmt: skip
    return t.add_resource(
        QueuePolicy(naming.logical_id(instance, "InstantDeadLetterQueuePolicy"), Queues=[Ref(queue)],
                    PolicyDocument=document(statement))
    )  # fmt: skip


# ------------------------------------------------------------------------------------------------------------------
# SFTP


def sftp_log_group_name(instance: str) -> str:
    # Under /aws/vendedlogs/: the resource policy CloudWatch Logs creates for structured-log delivery then covers it
    # with one wildcard instead of growing by one log group ARN per server (its size is capped).
    return f"/aws/vendedlogs/transfer/{instance_stackset(instance)}-sftp"


def add_sftp(t: Template, cfg: Config, instance: str, key: Key, upload: Bucket) -> Sftp:
    """Public SFTP endpoint (key-only service-managed users) writing into the upload bucket's prefixes."""
    log_group = t.add_resource(
        retain(LogGroup(naming.logical_id(instance, "SftpLogGroup"), LogGroupName=sftp_log_group_name(instance),
                        KmsKeyId=GetAtt(key, "Arn"), RetentionInDays=cfg.instances[instance].logs.retention_days))
    )  # fmt: skip
    # Structured logs go through CloudWatch Logs delivery, not a server logging role (that one is for workflows).
    server = Server(naming.logical_id(instance, "SftpServer"), Domain="S3", EndpointType="PUBLIC",
                    IdentityProviderType="SERVICE_MANAGED", Protocols=["SFTP"],
                    SecurityPolicyName=SFTP_SECURITY_POLICY, StructuredLogDestinations=[GetAtt(log_group, "Arn")])
    skip_checkov(server, CKV_AWS_164="partners upload from the internet; users authenticate with SSH keys only")
    t.add_resource(server)
    role = add_sftp_user_role(t, instance, key, upload)
    users = []
    for user_name, user in sorted(cfg.instances[instance].sftp.users.items()):
        # A logical home directory chroots the user into one prefix: "/" is all they see.
        home = HomeDirectoryMapEntry(Entry="/", Target=f"/{upload.BucketName}/{user.folder}")
        users.append(t.add_resource(
            User(naming.logical_id(instance, "SftpUser", user_name), UserName=user_name,
                 ServerId=GetAtt(server, "ServerId"), Role=GetAtt(role, "Arn"), HomeDirectoryType="LOGICAL",
                 HomeDirectoryMappings=[home], SshPublicKeys=list(user.ssh_public_keys))
        ))  # fmt: skip
    return Sftp(server, role, users)


def add_sftp_user_role(t: Template, instance: str, key: Key, bucket: Bucket) -> Role:
    """One role for the instance's SFTP users: the upload prefixes only (each user's home narrows it to one)."""
    prefixes = [f"{prefix}/*" for prefix in naming.UPLOAD_PREFIXES]
    permissions = document(
        Statement(Sid="ListUploadPrefixes", Effect=Allow, Action=[s3.ListBucket], Resource=[GetAtt(bucket, "Arn")],
                  Condition=Condition(StringLike("s3:prefix", prefixes))),
        Statement(Sid="BucketRegion", Effect=Allow, Action=[s3.GetBucketLocation], Resource=[GetAtt(bucket, "Arn")]),
        Statement(Sid="UploadObjects", Effect=Allow, Action=[s3.PutObject, s3.GetObject, s3.DeleteObject],
                  Resource=[object_arn(bucket, prefix) for prefix in prefixes]),
        Statement(Sid="UseDataKey", Effect=Allow, Resource=[GetAtt(key, "Arn")],
                  Action=[awacs.kms.Decrypt, awacs.kms.GenerateDataKey]),
    )  # fmt: skip
    return t.add_resource(
        Role(naming.logical_id(instance, "SftpUsersRole"), RoleName=naming.role_name(instance, naming.SFTP_USER_ROLE),
             Description=f"SFTP users of RStudio instance {instance}",
             AssumeRolePolicyDocument=service_trust("transfer.amazonaws.com", regional_arn("transfer", "user/*")),
             Policies=[RolePolicy(PolicyName="upload-prefixes", PolicyDocument=permissions)])
    )  # fmt: skip


# ------------------------------------------------------------------------------------------------------------------
# Outputs


def add_outputs(t: Template, instance: str, data: InstanceData) -> list[Output]:
    """Read cross-account by the orchestrator and passed to the instance StackSet."""
    values = {
        "UploadBucketName": (Ref(data.upload), "Upload bucket"),
        "UploadBucketArn": (GetAtt(data.upload, "Arn"), "Upload bucket ARN"),
        "DataKeyArn": (GetAtt(data.key, "Arn"), "KMS key of the upload bucket (DataSync decrypts with it)"),
        "AthenaRoleArn": (GetAtt(data.athena_role, "Arn"), "Role the RStudio task roles assume for Athena"),
        "AthenaWorkGroup": (Ref(data.workgroup), "Athena workgroup"),
        "GlueDatabase": (Ref(data.database), "Glue database"),
    }
    if data.sftp:
        server_id = GetAtt(data.sftp.server, "ServerId")
        values["SftpServerId"] = (server_id, "SFTP server id")
        values["SftpEndpoint"] = (Sub("${Id}.server.transfer.${AWS::Region}.${AWS::URLSuffix}", Id=server_id),
                                  "SFTP host name")  # fmt: skip
    outputs = [
        Output(naming.logical_id(instance, name), Description=f"{instance}: {description}", Value=value)
        for name, (value, description) in values.items()
    ]
    t.add_output(outputs)
    return outputs
