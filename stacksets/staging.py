"""How a template reaches CloudFormation: inline (TemplateBody), or staged in S3 when it is too large for that."""

from __future__ import annotations

import threading

from botocore.exceptions import ClientError

from stacksets.aws import explain
from stacksets.calls import call, error_code
from stacksets.plan import Node
from stacksets.results import NodeFailed
from stacksets.run import Run

PUBLIC_ACCESS_BLOCKED = {"BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True,
                         "RestrictPublicBuckets": True}  # fmt: skip
ENCRYPTED = {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]}


class TemplateStaging:
    def __init__(self, run: Run) -> None:
        self.run = run
        self._lock = threading.Lock()

    def template_argument(self, node: Node) -> dict[str, str]:
        if not node.needs_s3:
            return {"TemplateBody": node.template_body}
        return {"TemplateURL": self._stage(node)}

    def _bucket_name(self) -> str:
        if self.run.options.staging_bucket:
            return self.run.options.staging_bucket
        account = call(self.run, self.run.clients.client("sts"), "get_caller_identity")["Account"]
        return f"rstudio-fargate-templates-{account}-{self.run.clients.region}"

    def _stage(self, node: Node) -> str:
        """Upload the exact committed bytes, keyed by their hash (an unchanged template is never uploaded twice)."""
        s3 = self.run.clients.client("s3")
        bucket = self._bucket_name()
        region = self.run.clients.region
        with self._lock:  # two large templates at once must not both create the bucket
            if not self._exists(s3, bucket, "head_bucket", ("404", "NoSuchBucket", "NotFound"), Bucket=bucket):
                call(self.run, s3, "create_bucket", Bucket=bucket, **_location(region))
                call(self.run, s3, "put_public_access_block", Bucket=bucket,
                     PublicAccessBlockConfiguration=PUBLIC_ACCESS_BLOCKED)  # fmt: skip
                call(self.run, s3, "put_bucket_encryption", Bucket=bucket, ServerSideEncryptionConfiguration=ENCRYPTED)
        key = f"templates/{node.template_sha256}.yaml"
        if not self._exists(s3, bucket, "head_object", ("404", "NoSuchKey", "NotFound"), Bucket=bucket, Key=key):
            call(self.run, s3, "put_object", Bucket=bucket, Key=key, Body=node.template_body.encode("utf-8"),
                 ContentType="application/x-yaml")  # fmt: skip
        return f"https://{bucket}.s3.{region}.{_dns_suffix(region)}/{key}"

    def _exists(self, s3: object, bucket: str, api: str, missing: tuple[str, ...], **kwargs: str) -> bool:
        try:
            call(self.run, s3, api, **kwargs)
        except ClientError as error:
            if error_code(error) not in missing:
                raise NodeFailed(f"staging bucket {bucket}: {explain(error)}") from None
            return False
        return True


def _location(region: str) -> dict[str, object]:
    # us-east-1 is the default location, and CreateBucket refuses it as a LocationConstraint
    return {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}


def _dns_suffix(region: str) -> str:
    """S3's host name suffix: China Regions have their own (AWS General Reference, "Amazon S3 endpoints")."""
    return "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
