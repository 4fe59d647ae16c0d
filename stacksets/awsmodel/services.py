"""STS, IAM (where it bites), S3, ECR, CodeBuild, CloudWatch Logs and SES: the parts of them the orchestrator uses.

Rules (docs/aws_model.md):
- AssumeRole works only for a role that exists in the target account: the roles are the ones the deployed stacks
  created (`rstudio-deploy-reader` from rstudio-bootstrap, `rstudio-image-publisher` from rstudio-central).
- A call made with a role's credentials is allowed only if one of the role's policy statements allows the IAM
  action (IAM user guide, "Policy evaluation logic": implicit deny). Resources and conditions are not evaluated.
- S3 bucket names are global; CreateBucket outside us-east-1 needs a LocationConstraint equal to the client's
  Region (IllegalLocationConstraintException); a TemplateURL must point at an object the caller can read, on the
  partition's own host (`amazonaws.com.cn` in China Regions).
- ECR tags of the image repositories are immutable; DescribeImages raises ImageNotFoundException /
  RepositoryNotFoundException.
- A CodeBuild build of the image project downloads the uploaded context and refuses it unless it hashes to its tag
  (generator/buildspec.py); on success the tag is in ECR.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import io
import itertools
import json
import re
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Callable, Iterable

from stacksets.awsmodel.adapter import ModelError
from stacksets.awsmodel.custom import verified
from stacksets.awsmodel.templates import parsed_template
from stacksets.build_context import context_tag
from stacksets.naming import IMAGE_BUILD_PROJECT

if TYPE_CHECKING:
    from stacksets.awsmodel.model import Caller, World

BUILD_SECONDS = 600.0
# IAM action names that differ from the operation name (S3 API reference, "Actions, resources, and condition keys").
IAM_ACTIONS = {("s3", "HeadObject"): "s3:GetObject", ("s3", "HeadBucket"): "s3:ListBucket"}
# The code each service answers an IAM denial with: ECS as AccessDeniedException (cdklabs/construct-hub#1207 quotes
# "AccessDeniedException: User: ... is not authorized to perform: ecs:ListTasks"), EC2 as UnauthorizedOperation
# (botocore ec2 DryRun: "Otherwise, it is UnauthorizedOperation").
DENIED_CODES = {"ecs": "AccessDeniedException", "ec2": "UnauthorizedOperation"}
ECR_PASSWORD = "model-ecr-password"  # noqa: S105 - the modelled ECR's login token, never a real secret


def partition(region: str) -> str:
    return "aws-cn" if region.startswith("cn-") else "aws-us-gov" if region.startswith("us-gov-") else "aws"


@dataclass(frozen=True)
class Caller:
    account: str
    region: str
    role: str | None = None  # the assumed role's name, None for the admin account's own credentials


@dataclass
class Identity:
    """Who an access key belongs to."""

    account: str
    role: str | None = None


class Sts:
    def __init__(self, world: World) -> None:
        self.world = world
        self.keys: dict[str, Identity] = {}
        self._serial = itertools.count(1)

    def caller(self, access_key: str, region: str) -> Caller:
        identity = self.keys.get(access_key)
        if identity is None:
            raise ModelError("InvalidClientTokenId", "The security token included in the request is invalid.", 403)
        return Caller(identity.account, region, identity.role)

    def get_caller_identity(self, caller: Caller, _: dict[str, Any]) -> dict[str, Any]:
        arn = (f"arn:{partition(caller.region)}:sts::{caller.account}:assumed-role/{caller.role}/rstudio-fargate"
               if caller.role else f"arn:{partition(caller.region)}:iam::{caller.account}:user/admin")  # fmt: skip
        return {"Account": caller.account, "Arn": arn, "UserId": f"AIDA{caller.account}"}

    def assume_role(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        match = re.fullmatch(r"arn:[\w-]+:iam::(\d{12}):role/(.+)", params["RoleArn"])
        if match is None:
            raise ModelError("ValidationError", f"invalid RoleArn {params['RoleArn']}")
        account, role = match.groups()
        if self.world.iam.role_policy(account, role) is None:
            raise ModelError("AccessDenied", f"User: arn:aws:iam::{caller.account}:user/admin is not authorized to "
                             f"perform: sts:AssumeRole on resource: {params['RoleArn']}", 403)  # fmt: skip
        key = f"ASIA{next(self._serial):016d}"
        self.keys[key] = Identity(account, role)
        # botocore refreshes by wall-clock time, so the expiry is real time: an hour, as the role's session allows
        expiry = datetime.now(timezone.utc) + timedelta(hours=1)
        return {"Credentials": {"AccessKeyId": key, "SecretAccessKey": "model-secret", "SessionToken": "model-token",
                                "Expiration": expiry},
                "AssumedRoleUser": {"AssumedRoleId": f"AROA{account}:{params['RoleSessionName']}",
                                    "Arn": f"arn:aws:sts::{account}:assumed-role/{role}/{params['RoleSessionName']}"}}


class Iam:
    def __init__(self, world: World) -> None:
        self.world = world

    def role_policy(self, account: str, role: str) -> list[dict[str, Any]] | None:
        """The statements of a live role's inline policies (and of AWS::IAM::Policy resources attached to it)."""
        try:
            stack, resource = self.world.stacks.find_resource(account, None, "AWS::IAM::Role", role)
        except KeyError:
            return None
        resources = parsed_template(stack.template_body)["Resources"]
        role_properties = resources.get(resource.logical_id, {}).get("Properties", {})
        statements = [s for p in role_properties.get("Policies", []) for s in _statements(p.get("PolicyDocument"))]
        for other in resources.values():
            roles = (other.get("Properties") or {}).get("Roles", [])
            if other.get("Type") == "AWS::IAM::Policy" and {"Ref": resource.logical_id} in roles:
                statements += _statements(other["Properties"].get("PolicyDocument"))
        return statements

    def authorize(self, caller: Caller, service: str, operation: str) -> None:
        # STS API reference GetCallerIdentity: "No permissions are required to perform this operation"
        if caller.role is None or (service, operation) == ("sts", "GetCallerIdentity"):
            return
        action = IAM_ACTIONS.get((service, operation), f"{_iam_prefix(service)}:{operation}")
        statements = self.role_policy(caller.account, caller.role) or []
        allowed = any(_matches(s, action) for s in statements if s.get("Effect") == "Allow")
        denied = any(_matches(s, action) for s in statements if s.get("Effect") == "Deny" and not s.get("Condition"))
        if denied or not allowed:
            raise ModelError(DENIED_CODES.get(service, "AccessDenied"),
                             f"User: arn:aws:sts::{caller.account}:assumed-role/{caller.role}/"
                             f"rstudio-fargate is not authorized to perform: {action} because no identity-based "
                             "policy allows the action", 403)  # fmt: skip


def _statements(document: Any) -> list[dict[str, Any]]:
    if not isinstance(document, dict):
        return []
    statements = document.get("Statement", [])
    return statements if isinstance(statements, list) else [statements]


def _matches(statement: dict[str, Any], action: str) -> bool:
    actions = statement.get("Action", [])
    actions = actions if isinstance(actions, list) else [actions]
    return any(isinstance(a, str) and fnmatch.fnmatchcase(action.lower(), a.lower()) for a in actions)


def _iam_prefix(service: str) -> str:
    return {"ecr": "ecr", "logs": "logs", "email": "ses", "ses": "ses"}.get(service, service)


# --- S3 -------------------------------------------------------------------------------------------------------------


@dataclass
class Bucket:
    owner: str
    region: str
    objects: dict[str, bytes] = field(default_factory=dict)


class S3:
    def __init__(self, world: World) -> None:
        self.world = world
        self.buckets: dict[str, Bucket] = {}

    def bucket(self, name: str) -> Bucket | None:
        if name in self.buckets:
            return self.buckets[name]
        for (account, region), _stacks in list(self.world.stacks.by_place.items()):
            try:
                self.world.stacks.find_resource(account, region, "AWS::S3::Bucket", name)
            except KeyError:
                continue
            self.buckets[name] = Bucket(account, region)
            return self.buckets[name]
        return None

    def _owned(self, caller: Caller, name: str) -> Bucket:
        found = self.bucket(name)
        if found is None:
            raise ModelError("NoSuchBucket", f"The specified bucket does not exist: {name}", 404)
        if found.owner != caller.account:
            raise ModelError("AccessDenied", f"Access Denied to bucket {name}", 403)
        return found

    def head_bucket(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        found = self.bucket(params["Bucket"])
        if found is None:
            raise ModelError("404", "Not Found", 404)
        if found.owner != caller.account:
            raise ModelError("403", "Forbidden", 403)
        return {}

    def create_bucket(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        name = params["Bucket"]
        found = self.bucket(name)
        if found is not None:
            code = "BucketAlreadyOwnedByYou" if found.owner == caller.account else "BucketAlreadyExists"
            raise ModelError(code, f"bucket {name} exists", 409)
        constraint = params.get("CreateBucketConfiguration", {}).get("LocationConstraint")
        expected = None if caller.region == "us-east-1" else caller.region
        if constraint is not None and caller.region == "us-east-1":
            raise ModelError("InvalidLocationConstraint", "The specified location-constraint is not valid")
        if constraint != expected:
            raise ModelError("IllegalLocationConstraintException", f"The {constraint or 'unspecified'} location "
                             f"constraint is incompatible for the region specific endpoint this request was sent "
                             f"to ({caller.region}).")  # fmt: skip
        self.buckets[name] = Bucket(caller.account, caller.region)
        return {"Location": f"/{name}"}

    def put_public_access_block(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        self._owned(caller, params["Bucket"])
        return {}

    def put_bucket_encryption(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        self._owned(caller, params["Bucket"])
        return {}

    def head_object(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        found = self._owned(caller, params["Bucket"])
        if params["Key"] not in found.objects:
            raise ModelError("404", "Not Found", 404)
        return {"ContentLength": len(found.objects[params["Key"]])}

    def put_object(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        body = params.get("Body", b"")
        data = body if isinstance(body, bytes) else body.read() if hasattr(body, "read") else str(body).encode()
        self._owned(caller, params["Bucket"]).objects[params["Key"]] = data
        return {"ETag": f'"{len(data)}"'}

    def get_object(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        found = self._owned(caller, params["Bucket"])
        if params["Key"] not in found.objects:
            raise ModelError("NoSuchKey", "The specified key does not exist.", 404)
        return {"Body": io.BytesIO(found.objects[params["Key"]])}

    def read_template_url(self, caller: Caller, url: str) -> str:
        """CloudFormation reads a TemplateURL with the caller's access (API reference CreateStackSet.TemplateURL)."""
        suffix = "amazonaws.com.cn" if partition(caller.region) == "aws-cn" else "amazonaws.com"
        match = re.fullmatch(rf"https://([a-z0-9.-]+)\.s3\.([a-z0-9-]+)\.{re.escape(suffix)}/(.+)", url)
        refused = ModelError("ValidationError", f"TemplateURL must reference a valid S3 object to which you have "
                             f"access: {url}")  # fmt: skip
        if match is None:
            raise refused
        name, region, key = match.groups()
        found = self.bucket(name)
        if found is None or found.owner != caller.account or found.region != region or key not in found.objects:
            raise refused
        return found.objects[key].decode("utf-8")


# --- ECR, CodeBuild, Logs ------------------------------------------------------------------------------------------


@dataclass
class Build:
    id: str
    account: str
    region: str
    image: str
    tag: str
    end: float
    status: str = "IN_PROGRESS"
    phase: str = "BUILD"
    reason: str = ""


class Images:
    """The central account's ECR repositories (created by rstudio-central) and its image build project."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.tags: dict[tuple[str, str, str], set[str]] = {}  # (account, region, repository) -> tags
        self.builds: dict[str, Build] = {}
        self._serial = itertools.count(1)
        # `docker push` speaks the registry protocol, which the model does not serve: a test that runs a docker
        # stand-in says here which (repository, tag) it pushed
        self.pushed_outside: Callable[[], Iterable[tuple[str, str]]] = _nothing_pushed

    def _repository(self, caller: Caller, name: str) -> set[str]:
        try:
            self.world.stacks.find_resource(caller.account, caller.region, "AWS::ECR::Repository", name)
        except KeyError:
            raise ModelError("RepositoryNotFoundException", f"The repository with name '{name}' does not exist in "
                             f"the registry with id '{caller.account}'") from None  # fmt: skip
        tags = self.tags.setdefault((caller.account, caller.region, name), set())
        tags |= {tag for repository, tag in self.pushed_outside() if repository == name}
        return tags

    def describe_images(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        tags = self._repository(caller, params["repositoryName"])
        wanted = [i["imageTag"] for i in params.get("imageIds", []) if "imageTag" in i]
        missing = [t for t in wanted if t not in tags]
        if missing:
            raise ModelError("ImageNotFoundException", f"The image with imageId {{imageTag:'{missing[0]}'}} does not "
                             f"exist within the repository with name '{params['repositoryName']}'")  # fmt: skip
        return {"imageDetails": [{"registryId": caller.account, "repositoryName": params["repositoryName"],
                                  "imageTags": [t], "imageDigest": f"sha256:{t}"} for t in wanted or sorted(tags)]}

    def put_image(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        tags = self._repository(caller, params["repositoryName"])
        tag = params.get("imageTag", "")
        _, repository = self.world.stacks.find_resource(caller.account, caller.region, "AWS::ECR::Repository",
                                                        params["repositoryName"])  # fmt: skip
        # ECR's default is MUTABLE (API reference CreateRepository.imageTagMutability)
        if tag in tags and repository.properties.get("ImageTagMutability", "MUTABLE") == "IMMUTABLE":
            raise ModelError("ImageTagAlreadyExistsException", f"The image tag '{tag}' already exists in the "
                             f"'{params['repositoryName']}' repository and cannot be overwritten because the tag is "
                             "immutable.")  # fmt: skip
        tags.add(tag)
        return {"image": {"repositoryName": params["repositoryName"], "imageId": {"imageTag": tag}}}

    def get_authorization_token(self, caller: Caller, _: dict[str, Any]) -> dict[str, Any]:
        token = base64.b64encode(f"AWS:{ECR_PASSWORD}".encode()).decode()
        endpoint = f"https://{caller.account}.dkr.ecr.{caller.region}.amazonaws.com"
        return {"authorizationData": [{"authorizationToken": token, "proxyEndpoint": endpoint}]}

    def start_build(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        try:
            self.world.stacks.find_resource(caller.account, caller.region, "AWS::CodeBuild::Project",
                                            params["projectName"])  # fmt: skip
        except KeyError:
            raise ModelError("ResourceNotFoundException", f"Project cannot be found: {params['projectName']}") from None
        if "buildspecOverride" in params:
            # the publisher role denies codebuild:StartBuild with a buildspec of its own (rstudio-central)
            raise ModelError("AccessDeniedException", "explicit deny: StartBuild with buildspecOverride", 403)
        variables = {v["name"]: v["value"] for v in params.get("environmentVariablesOverride", [])}
        build = Build(f"{params['projectName']}:{next(self._serial):08d}-model", caller.account, caller.region,
                      variables.get("IMAGE_NAME", ""), variables.get("IMAGE_TAG", ""),
                      self.world.now() + self.world.duration_for(IMAGE_BUILD_PROJECT, BUILD_SECONDS))  # fmt: skip
        self.builds[build.id] = build
        return {"build": self._answer(build)}

    def batch_get_builds(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        found = [self.builds[i] for i in params["ids"] if i in self.builds]
        for build in found:
            if build.status == "IN_PROGRESS" and self.world.now() >= build.end:
                self._finish(build)
        answer: dict[str, Any] = {"builds": [self._answer(b) for b in found]}
        unknown = [i for i in params["ids"] if i not in self.builds]
        if unknown:
            answer["buildsNotFound"] = unknown
        return answer

    def _finish(self, build: Build) -> None:
        key = f"contexts/{build.image}/{build.tag}.zip"
        archive = next((b.objects[key] for b in self.world.s3.buckets.values()
                        if b.owner == build.account and key in b.objects), None)  # fmt: skip
        if archive is None:
            build.status, build.phase, build.reason = "FAILED", "PRE_BUILD", f"no s3 object {key}"
        elif _context_tag_of(archive) != build.tag:
            build.status, build.phase, build.reason = "FAILED", "PRE_BUILD", f"{key} does not hash to {build.tag}"
        else:
            build.status, build.phase = "SUCCEEDED", "COMPLETED"
            self.tags.setdefault((build.account, build.region, build.image), set()).add(build.tag)

    def _answer(self, build: Build) -> dict[str, Any]:
        stream = build.id.split(":", 1)[1]
        answer: dict[str, Any] = {
            "id": build.id, "buildStatus": build.status, "currentPhase": build.phase,
            "logs": {"groupName": "/rstudio/central/image-build", "streamName": stream,
                     "deepLink": f"https://console.aws.amazon.com/cloudwatch/home?region={build.region}#logEvent:"
                                 f"group=/rstudio/central/image-build;stream={stream}"},
        }  # fmt: skip
        if build.status == "FAILED":
            answer["phases"] = [{"phaseType": "SUBMITTED", "phaseStatus": "SUCCEEDED"},
                                {"phaseType": build.phase, "phaseStatus": "FAILED",
                                 "contexts": [{"statusCode": "COMMAND_EXECUTION_ERROR", "message": build.reason}]}]
        return answer

    def get_log_events(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        build = next((b for b in self.builds.values() if b.id.endswith(params["logStreamName"])), None)
        if build is None:
            raise ModelError("ResourceNotFoundException", "The specified log stream does not exist.")
        lines = [f"[Container] Running {build.image} {build.tag}", f"[Container] Phase {build.phase} {build.status}"]
        if build.reason:
            lines.append(build.reason)
        return {"events": [{"timestamp": 0, "message": line + "\n"} for line in lines]}


def _nothing_pushed() -> Iterable[tuple[str, str]]:
    return ()


def _context_tag_of(archive: bytes) -> str:
    with zipfile.ZipFile(io.BytesIO(archive)) as zipped:
        return context_tag({name: zipped.read(name) for name in zipped.namelist()})


class Ses:
    """Verified identities per account; by default every identity counts as verified (the README's rehearsal)."""

    def __init__(self, world: World) -> None:
        self.world = world

    def get_identity_verification_attributes(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        identities = self.world.verified_identities(caller.account)
        # identities never submitted for verification are left out of the answer (API reference
        # GetIdentityVerificationAttributes); the scenario only knows which ones are verified
        return {"VerificationAttributes": {i: {"VerificationStatus": "Success"} for i in params["Identities"]
                                           if identities is None or i in identities}}

    def send_email(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        identities = self.world.verified_identities(caller.account)
        addresses = [params["Source"], *params["Destination"].get("ToAddresses", [])]
        refused = [a for a in addresses if not verified(a, identities)]
        if refused:
            # SES developer guide, sandbox: "you can only send mail to verified email addresses and domains"
            raise ModelError("MessageRejected", f"Email address is not verified. The following identities failed "
                             f"the check in region {caller.region.upper()}: {', '.join(refused)}")  # fmt: skip
        self.world.sent_mail.append((caller.account, params["Source"], tuple(addresses[1:])))
        return {"MessageId": f"model-{len(self.world.sent_mail):08d}"}


class Secrets:
    """Secrets Manager values of the secrets the stacks created (GenerateSecretString filled in once)."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.values: dict[str, str] = {}

    def get_secret_value(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        secret_id = params["SecretId"]
        try:
            _, secret = self.world.stacks.find_resource(caller.account, caller.region, "AWS::SecretsManager::Secret",
                                                        secret_id)  # fmt: skip
        except KeyError:
            raise ModelError("ResourceNotFoundException", "Secrets Manager can't find the specified secret.") from None
        if secret.physical_id not in self.values:
            self.values[secret.physical_id] = _generated(secret.physical_id, secret.properties)
        return {"ARN": secret.physical_id, "Name": secret.name or secret.physical_id,
                "SecretString": self.values[secret.physical_id]}


def _generated(arn: str, properties: dict[str, Any]) -> str:
    if "SecretString" in properties:
        return str(properties["SecretString"])
    spec = properties.get("GenerateSecretString") or {}
    value = hashlib.sha256(arn.encode()).hexdigest()[: int(spec.get("PasswordLength", 32))]
    if spec.get("SecretStringTemplate") and spec.get("GenerateStringKey"):
        return json.dumps({**json.loads(spec["SecretStringTemplate"]), spec["GenerateStringKey"]: value})
    return value
