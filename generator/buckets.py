"""Hardened S3 buckets and their policies, as every data-holding bucket of the project wants them."""

from __future__ import annotations

from troposphere import GetAtt, Ref, Sub, Template
from troposphere.kms import Key
from troposphere.s3 import (
    AbortIncompleteMultipartUpload,
    Bucket,
    BucketEncryption,
    BucketPolicy,
    LifecycleConfiguration,
    LifecycleRule,
    OwnershipControls,
    OwnershipControlsRule,
    PublicAccessBlockConfiguration,
    ServerSideEncryptionByDefault,
    ServerSideEncryptionRule,
    VersioningConfiguration,
)

from generator.common import retain
from generator.iam import Statement, deny_insecure_transport, document

ABORT_MULTIPART_DAYS = 7


def object_arn(bucket: Bucket, key: str = "*") -> Sub:
    return Sub(f"${{{bucket.title}.Arn}}/{key}")


def bucket_arns(bucket: Bucket) -> list[GetAtt | Sub]:
    return [GetAtt(bucket, "Arn"), object_arn(bucket)]


def hardened_bucket(title: str, name: str, key: Key | None, rules: list[LifecycleRule], **extra: object) -> Bucket:
    """Versioned, private, ACL-free; SSE-KMS with the instance key and a bucket key, or SSE-S3 when key is None."""
    by_default = (
        ServerSideEncryptionByDefault(SSEAlgorithm="aws:kms", KMSMasterKeyID=GetAtt(key, "Arn"))
        if key
        else ServerSideEncryptionByDefault(SSEAlgorithm="AES256")
    )
    bucket = Bucket(
        title,
        BucketName=name,
        BucketEncryption=BucketEncryption(
            ServerSideEncryptionConfiguration=[
                ServerSideEncryptionRule(ServerSideEncryptionByDefault=by_default, BucketKeyEnabled=bool(key))
            ]
        ),
        VersioningConfiguration=VersioningConfiguration(Status="Enabled"),
        PublicAccessBlockConfiguration=PublicAccessBlockConfiguration(
            BlockPublicAcls=True, BlockPublicPolicy=True, IgnorePublicAcls=True, RestrictPublicBuckets=True
        ),
        OwnershipControls=OwnershipControls(Rules=[OwnershipControlsRule(ObjectOwnership="BucketOwnerEnforced")]),
        LifecycleConfiguration=LifecycleConfiguration(Rules=rules),
        **extra,
    )
    return retain(bucket)


def add_bucket_policy(t: Template, bucket: Bucket, *statements: Statement) -> BucketPolicy:
    """TLS-only plus the given grants. Ref, not the name: the policy must wait for its bucket."""
    policy = document(deny_insecure_transport(bucket_arns(bucket)), *statements)
    return t.add_resource(BucketPolicy(f"{bucket.title}Policy", Bucket=Ref(bucket), PolicyDocument=policy))


def abort_multipart() -> AbortIncompleteMultipartUpload:
    return AbortIncompleteMultipartUpload(DaysAfterInitiation=ABORT_MULTIPART_DAYS)
