"""rstudio-fargate data account: the access-log bucket every instance's data buckets write their S3 access logs to.

Deployed once by the `rstudio-data` StackSet to the data account in the default region, before the per-instance
`rstudio-<instance>-data` StackSets (generator/stacks/instance_data.py), whose buckets name it as their log target.
"""

from __future__ import annotations

from awacs import s3
from awacs.aws import Condition, Principal, StringEquals
from troposphere import Output, Ref, Template
from troposphere.s3 import Bucket, LifecycleRule, NoncurrentVersionExpiration

from generator import naming
from generator.buckets import (
    abort_multipart,
    add_bucket_policy,
    hardened_bucket,
    object_arn,
)
from generator.common import new_template, skip_checkov
from generator.iam import Allow, Statement
from stacksets.config import Config


def build(cfg: Config) -> Template:
    t = new_template(__doc__)
    bucket = add_access_log_bucket(t, cfg)
    t.add_output(Output("AccessLogBucketName", Description="S3 access logs of the instance data buckets",
                        Value=Ref(bucket)))  # fmt: skip
    return t


def add_access_log_bucket(t: Template, cfg: Config) -> Bucket:
    """S3 server access logs of every instance bucket; kept as long as the longest instance log retention."""
    name = naming.access_log_bucket_name(cfg.accounts.data, cfg.default_region)
    keep_days = max(instance.logs.retention_days for instance in cfg.instances.values())
    rule = LifecycleRule(Id="expire-access-logs", Status="Enabled", ExpirationInDays=keep_days,
                         NoncurrentVersionExpiration=NoncurrentVersionExpiration(NoncurrentDays=1),
                         AbortIncompleteMultipartUpload=abort_multipart())  # fmt: skip
    # SSE-S3, not the instance keys: S3 server access logging cannot deliver into SSE-KMS buckets.
    bucket = skip_checkov(
        hardened_bucket("AccessLogBucket", name, None, [rule]),
        CKV_AWS_18="this is the access-log bucket; logging it into itself would log its own log deliveries",
    )
    t.add_resource(bucket)
    delivery = Statement(
        Sid="S3ServerAccessLogs",
        Effect=Allow,
        Principal=Principal("Service", "logging.s3.amazonaws.com"),
        Action=[s3.PutObject],
        Resource=[object_arn(bucket)],
        Condition=Condition(StringEquals("aws:SourceAccount", Ref("AWS::AccountId"))),
    )
    add_bucket_policy(t, bucket, delivery)
    return bucket
