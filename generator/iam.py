"""awacs helpers: partition-safe ARNs and the policy statements several StackSets share."""

from __future__ import annotations

import awacs.sts
from awacs import s3
from awacs.aws import Action as AwacsAction
from awacs.aws import (
    Allow,
    ArnEquals,
    ArnLike,
    AWSPrincipal,
    Bool,
    Condition,
    ConditionElement,
    Deny,
    Policy,
    PolicyDocument,
    Principal,
    Statement,
    StringEquals,
)
from troposphere import Ref, Sub

Action = AwacsAction


def arn(service: str, resource: str, *, region: str = "", account: str = "") -> Sub:
    """`arn("s3", "my-bucket")` -> Sub("arn:${AWS::Partition}:s3:::my-bucket"); `${...}` in parts is substituted."""
    return Sub(f"arn:${{AWS::Partition}}:{service}:{region}:{account}:{resource}")


def regional_arn(
    service: str, resource: str, account: str = "${AWS::AccountId}", region: str = "${AWS::Region}"
) -> Sub:
    return arn(service, resource, region=region, account=account)


def account_root(account: str) -> Sub:
    return Sub(f"arn:${{AWS::Partition}}:iam::{account}:root")


def role_arn(account: str, name: str) -> Sub:
    return Sub(f"arn:${{AWS::Partition}}:iam::{account}:role/{name}")


def role_arn_text(account: str, name: str) -> str:
    """The same ARN as a Sub body, for use inside Condition values (which must be plain strings or Subs)."""
    return f"arn:${{AWS::Partition}}:iam::{account}:role/{name}"


def named_role_principal(account: str, role: str, *more: str) -> tuple[Principal, Condition]:
    """Principal and condition granting exactly one role of another account (or exactly these few).

    A policy naming the role ARN as principal fails to deploy while the role does not exist yet, and the data
    account deploys before the instance accounts; the account root plus an `aws:PrincipalArn` condition grants
    the same single role without that ordering trap. Several roles are one ArnEquals with a list: IAM matches a
    condition key against a list of values with OR.
    """
    arns = [Sub(role_arn_text(account, name)) for name in (role, *more)]
    return (
        AWSPrincipal(account_root(account)),  # type: ignore[arg-type]
        Condition(ArnEquals("aws:PrincipalArn", arns if more else arns[0])),
    )


# Key policies cannot say "kms:*" under the house rules, so the account gets what administering and using a symmetric
# key takes; IAM policies in the account then decide which principal may do which part of it.
KEY_ADMIN_ACTIONS = ("Create*", "Describe*", "Enable*", "List*", "Put*", "Update*", "Revoke*", "Disable*", "Get*",
                     "Delete*", "TagResource", "UntagResource", "ScheduleKeyDeletion", "CancelKeyDeletion",
                     "RotateKeyOnDemand")  # fmt: skip
KEY_USE_ACTIONS = ("Encrypt", "Decrypt", "ReEncrypt*", "GenerateDataKey*", "DescribeKey", "CreateGrant")
# What CloudWatch Logs needs to encrypt a log group with a customer managed key (CloudWatch Logs user guide).
LOGS_KEY_ACTIONS = ("Encrypt*", "Decrypt*", "ReEncrypt*", "GenerateDataKey*", "Describe*")


def kms_actions(names: tuple[str, ...]) -> list[AwacsAction]:
    return [AwacsAction("kms", name) for name in names]


def account_key_statements() -> list[Statement]:
    """Key policy statements that hand the key to the owning account's IAM ("*" in a key policy means this key)."""
    account = AWSPrincipal(account_root("${AWS::AccountId}"))  # type: ignore[arg-type]
    return [
        Statement(Sid="AccountAdministersKeyThroughIam", Effect=Allow, Principal=account,
                  Action=kms_actions(KEY_ADMIN_ACTIONS), Resource=["*"]),
        Statement(Sid="AccountUsesKeyThroughIam", Effect=Allow, Principal=account,
                  Action=kms_actions(KEY_USE_ACTIONS), Resource=["*"]),
    ]  # fmt: skip


# DataSync's documented role set for an S3 location. The object-version reads come from the source-location set:
# the upload bucket is versioned, and DataSync reads the exact version it listed. Both the instance account's
# DataSync role and the data account's bucket policy grant exactly these.
DATASYNC_BUCKET_ACTIONS = (s3.GetBucketLocation, s3.ListBucket, s3.ListBucketMultipartUploads)
DATASYNC_OBJECT_ACTIONS = (s3.AbortMultipartUpload, s3.DeleteObject, s3.GetObject, s3.GetObjectTagging,
                           s3.GetObjectVersion, s3.GetObjectVersionTagging, s3.ListMultipartUploadParts,
                           s3.PutObject, s3.PutObjectTagging)  # fmt: skip


def dead_letter_key_statement() -> Statement:
    """For a key policy: EventBridge rules encrypt what they deliver to a queue or topic under this key (dead letters,
    the DataSync failure events). No source condition: AWS's own MDAA project notes that the KMS requests of an
    EventBridge delivery carry neither aws:SourceArn nor aws:SourceAccount, so such a condition would drop every
    message silently. What EventBridge may deliver, and from which rule, is decided by the queue's and the topic's
    policies, which name the rule."""
    return Statement(Sid="EventBridgeDeliveries", Effect=Allow, Principal=Principal("Service", "events.amazonaws.com"),
                     Action=[AwacsAction("kms", "Decrypt"), AwacsAction("kms", "GenerateDataKey")],
                     Resource=["*"])  # fmt: skip


def deny_insecure_transport(resources: list) -> Statement:
    return Statement(
        Sid="DenyInsecureTransport",
        Effect=Deny,
        Principal=Principal("*"),
        Action=[AwacsAction("s3", "*")],
        Resource=resources,
        Condition=Condition(Bool("aws:SecureTransport", "false")),
    )


def document(*statements: Statement) -> PolicyDocument:
    return PolicyDocument(Version="2012-10-17", Statement=list(statements))


def conditions(*parts: Condition | ConditionElement) -> Condition:
    """One Condition block from Condition blocks and single conditions (operators must not repeat)."""
    elements = []
    for part in parts:
        elements += part.conditions if isinstance(part, Condition) else [part]
    return Condition(elements)


# What AWS documents for every DataSync role's trust (DataSync user guide, "Creating an IAM role for DataSync to
# access your Amazon S3 location" and "Cross-service confused deputy prevention"): any DataSync resource of this
# account and Region. Which ARN DataSync presents when it validates a location's role is not documented, so a
# narrower pattern (task/*, location/*) risks a location that cannot be created.
DATASYNC_SOURCE_ARN = regional_arn("datasync", "*")


def service_trust(service: str, *source_arns: Sub) -> PolicyDocument:
    """Trust policy for an AWS service, limited to requests on behalf of this account (confused deputy)."""
    source_arn: Sub | list[Sub] = source_arns[0] if len(source_arns) == 1 else list(source_arns)
    return document(
        Statement(
            Effect=Allow,
            Principal=Principal("Service", service),
            Action=[awacs.sts.AssumeRole],
            Condition=conditions(StringEquals("aws:SourceAccount", Ref("AWS::AccountId")),
                                 ArnLike("aws:SourceArn", source_arn)),  # fmt: skip
        )
    )


__all__ = [
    "DATASYNC_BUCKET_ACTIONS",
    "DATASYNC_SOURCE_ARN",
    "DATASYNC_OBJECT_ACTIONS",
    "KEY_ADMIN_ACTIONS",
    "KEY_USE_ACTIONS",
    "LOGS_KEY_ACTIONS",
    "account_key_statements",
    "dead_letter_key_statement",
    "kms_actions",
    "Action",
    "Allow",
    "Deny",
    "Policy",
    "Statement",
    "account_root",
    "arn",
    "conditions",
    "deny_insecure_transport",
    "document",
    "named_role_principal",
    "regional_arn",
    "role_arn",
    "role_arn_text",
    "service_trust",
]
