"""The embedded AWS for `--sandbox`: a moto server on 127.0.0.1 with the config's organization, and the shims that make
moto run these templates and StackSets the way AWS does.

Usage (the orchestrator code is unchanged; only the endpoint and the account ids differ):

    with Sandbox() as sandbox:
        id_map = sandbox.setup_organization(cfg)
        plan = remap_plan(build_plan(cfg, Path("templates")), id_map)
        clients = Clients(cfg.default_region, endpoint_url=sandbox.endpoint_url)
        ...

The caller with unknown keys is moto's account 123456789012: it plays the admin (management) account. Every other
account of the config is created in moto's organization, which hands out random ids, so the plan is remapped to them.
The templates keep the config's literal ids (trust policies, ARNs); moto does not check them.

The shims at the bottom of this module rely on moto internals: they are pinned to one moto version, asserted at
import. After upgrading moto, run tests/test_sandbox.py and adjust them.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import logging
import os
import threading
import uuid
from dataclasses import dataclass, field, replace
from typing import Any, Callable
from urllib.parse import unquote, urlparse

import boto3
from botocore.config import Config as BotoConfig

from stacksets.config import Config, PermissionModel
from stacksets.errors import UserError
from stacksets.plan import Node, OutputRef, Override, ParameterValue, Plan, Targets

MOTO_VERSION = "5.2.5"
MANAGEMENT_ACCOUNT = "123456789012"  # moto's account for callers whose access key it does not know
# Fake keys moto does not know, so they map to the management account; any real credentials are hidden meanwhile.
FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "sandbox", "AWS_SECRET_ACCESS_KEY": "sandbox"}
HIDDEN_ENVIRONMENT = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ROLE_ARN",
                      "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                      "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")  # fmt: skip
# Point the shared files at nothing, so a profile's SSO, credential_process or endpoint cannot reach real AWS.
EMPTY_FILES = {"AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull}


class SandboxError(UserError):
    """The sandbox cannot do what was asked (unknown account id, not started); worded for the user."""


@dataclass(frozen=True)
class IdMap:
    """Config ids -> the ids moto gave the organization's accounts and OUs."""

    accounts: dict[str, str] = field(default_factory=dict)
    organizational_units: dict[str, str] = field(default_factory=dict)

    def account(self, config_id: str) -> str:
        try:
            return self.accounts[config_id]
        except KeyError:
            raise SandboxError(f"account {config_id} is not part of the sandbox organization") from None

    def organizational_unit(self, config_id: str) -> str:
        try:
            return self.organizational_units[config_id]
        except KeyError:
            raise SandboxError(f"OU {config_id} is not part of the sandbox organization") from None


class Sandbox:
    """A moto server on loopback with fake credentials in the environment while it runs."""

    def __init__(self, region: str = "eu-west-1") -> None:
        self.region = region
        self._server: Any = None
        self._saved_environment: dict[str, str | None] = {}
        self.endpoint_url = ""

    def __enter__(self) -> Sandbox:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> str:
        from moto.server import ThreadedMotoServer

        install_shims()
        # werkzeug logs every request even with verbose=False.
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self._set_environment()
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint_url = f"http://{host}:{port}"
        return self.endpoint_url

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None
        self._restore_environment()

    def reset(self) -> None:
        """Forget every resource (moto's own reset endpoint)."""
        import urllib.request

        urllib.request.urlopen(urllib.request.Request(f"{self._endpoint()}/moto-api/reset", method="POST")).close()
        STUBS.clear()

    def _endpoint(self) -> str:
        if not self.endpoint_url:
            raise SandboxError("the sandbox is not started")
        return self.endpoint_url

    def _set_environment(self) -> None:
        changes: dict[str, str | None] = {**FAKE_CREDENTIALS, **EMPTY_FILES, **dict.fromkeys(HIDDEN_ENVIRONMENT)}
        self._saved_environment = {key: os.environ.get(key) for key in changes}
        for key, value in changes.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value

    def _restore_environment(self) -> None:
        for key, value in self._saved_environment.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved_environment = {}

    def client(self, service: str, region: str | None = None, account: str | None = None) -> Any:
        """A client in the management account, or in `account` (moto id) through an assumed role."""
        config = BotoConfig(retries={"max_attempts": 1})  # moto answers its bugs with HTTP 500: do not retry them
        region = region or self.region
        keys: dict[str, str] = {}
        if account and account != MANAGEMENT_ACCOUNT:
            sts = boto3.client("sts", region_name=region, endpoint_url=self._endpoint(), config=config)
            role = f"arn:aws:iam::{account}:role/OrganizationAccountAccessRole"
            credentials = sts.assume_role(RoleArn=role, RoleSessionName="sandbox")["Credentials"]
            keys = {"aws_access_key_id": credentials["AccessKeyId"],
                    "aws_secret_access_key": credentials["SecretAccessKey"],
                    "aws_session_token": credentials["SessionToken"]}  # fmt: skip
        return boto3.client(service, region_name=region, endpoint_url=self._endpoint(), config=config, **keys)

    def setup_organization(self, cfg: Config) -> IdMap:
        """The config's organization in moto: the bootstrap OUs under the root and every account of the config in the
        first of them (at the root when self-managed). The admin account is moto's management account."""
        org = self.client("organizations")
        org.create_organization(FeatureSet="ALL")
        root = org.list_roots()["Roots"][0]["Id"]
        ous = {}
        for ou in cfg.stacksets.bootstrap.organizational_units:
            ous[ou] = org.create_organizational_unit(ParentId=root, Name=ou)["OrganizationalUnit"]["Id"]
        service = cfg.stacksets.permission_model is PermissionModel.service_managed
        home = ous[cfg.stacksets.bootstrap.organizational_units[0]] if service else root
        accounts = {cfg.accounts.admin: MANAGEMENT_ACCOUNT}
        for config_id in _member_accounts(cfg):
            if config_id in accounts:
                continue
            status = org.create_account(Email=f"{config_id}@sandbox.invalid", AccountName=f"sandbox-{config_id}")
            moto_id = status["CreateAccountStatus"]["AccountId"]
            if home != root:
                org.move_account(AccountId=moto_id, SourceParentId=root, DestinationParentId=home)
            accounts[config_id] = moto_id
        seed_hosted_zone(accounts[cfg.accounts.network], cfg.dns.base_zone_id, cfg.dns.base_domain)
        return IdMap(accounts=accounts, organizational_units=ous)


def _member_accounts(cfg: Config) -> list[str]:
    named = [cfg.accounts.central, cfg.accounts.network, cfg.accounts.data, *cfg.stacksets.bootstrap.accounts]
    return sorted(set(named) | {instance.account for instance in cfg.instances.values()})


# --------------------------------------------------------------------------------------------------------------------
# The plan with moto's ids


def remap_plan(plan: Plan, id_map: IdMap) -> Plan:
    """The same plan with targets, overrides and output references in moto's account and OU ids."""

    def value(parameter: ParameterValue) -> ParameterValue:
        if isinstance(parameter, OutputRef):
            return replace(parameter, account=id_map.account(parameter.account))
        return parameter

    def parameters(pairs: tuple[tuple[str, ParameterValue], ...]) -> tuple[tuple[str, ParameterValue], ...]:
        return tuple((key, value(parameter)) for key, parameter in pairs)

    def node(n: Node) -> Node:
        targets = Targets(regions=n.targets.regions, accounts=tuple(id_map.account(a) for a in n.targets.accounts),
                          organizational_units=tuple(id_map.organizational_unit(ou)
                                                     for ou in n.targets.organizational_units))  # fmt: skip
        overrides = tuple(Override(id_map.account(o.account), o.region, parameters(o.parameters)) for o in n.overrides)
        return replace(n, targets=targets, overrides=overrides, parameters=parameters(n.parameters))

    # The build bucket keeps its name: the template names it after the config's central account.
    images = replace(plan.images, account=id_map.account(plan.images.account)) if plan.images else None
    return Plan({name: node(n) for name, n in plan.nodes.items()}, images)


# ====================================================================================================================
# moto shims (moto 5.2.5 only)
#
# moto builds its CloudFormation type map from the direct subclasses of CloudFormationModel (weak references: _MODELS
# keeps ours alive); new subclasses are picked up once its lru caches are cleared.
# Everything else here replaces a few moto methods. What each shim fixes:
#   stubs           resource types moto lacks: ARN-like Ref, any GetAtt, recorded in STUBS, nothing in a backend
#   ACM, Secret     written to moto's ACM / SecretsManager, so an HTTPS listener finds its certificate
#   HostedZone      GetAtt NameServers / Id (moto has no GetAtt on zones); each zone its own 4 name servers
#   LoadBalancer    GetAtt CanonicalHostedZoneID (a fixed zone id) and LoadBalancerFullName; TargetGroup GetAtts
#   VPC             GetAtt Ipv6CidrBlocks (an Amazon-provided /56), and the Fn::Cidr intrinsic
#   KMS key         a KeyPolicy object is stored as JSON text (describe_key crashes otherwise)
#   RouteTable      deleted with its stack (otherwise the VPC delete fails)
#   StackSets       instances are real, visible stacks `StackSet-<name>-<uuid>` in the target account (both
#                   permission models); ParameterOverrides merge with the StackSet parameters; AccountFilterType
#                   INTERSECTION/DIFFERENCE; delete by OU; client-supplied OperationIds; failed instance stacks become
#                   FAILED instances instead of an HTTP 500; update_stack_set/instances really update the stacks;
#                   duplicate StackSet names refused; AutoDeployment kept; TemplateURL in path style
#                   (http://127.0.0.1:port/bucket/key); stack Parameters show list values as AWS does (a,b,c)
#   templates       YAML short forms on mappings (`!Base64 {Fn::Sub: ...}`) parsed
# ====================================================================================================================


@dataclass(frozen=True)
class Stub:
    """A resource moto cannot create, accepted by the shims: what a test can assert on."""

    resource_type: str
    logical_id: str
    physical_id: str
    account: str
    region: str
    properties: dict[str, Any]


STUBS: list[Stub] = []
_STUBS_LOCK = threading.Lock()
_INSTALLED = False
_MODELS: list[type] = []  # moto finds models through __subclasses__(), which holds weak references: keep them alive
_INSTALL_LOCK = threading.Lock()

# type -> (ARN service, resource path prefix); the Ref is the ARN unless said otherwise below.
STUB_TYPES: dict[str, tuple[str, str]] = {
    "AWS::ApplicationAutoScaling::ScalableTarget": ("application-autoscaling", "scalable-target/"),
    "AWS::ApplicationAutoScaling::ScalingPolicy": ("autoscaling", "scalingPolicy:"),
    "AWS::Athena::WorkGroup": ("athena", "workgroup/"),
    "AWS::CodeBuild::Project": ("codebuild", "project/"),
    "AWS::DataSync::LocationEFS": ("datasync", "location/loc-"),
    "AWS::DataSync::LocationS3": ("datasync", "location/loc-"),
    "AWS::DataSync::Task": ("datasync", "task/task-"),
    "AWS::Lambda::EventInvokeConfig": ("lambda", "event-invoke-config/"),
    "AWS::EC2::SecurityGroupEgress": ("ec2", "security-group-rule/"),
    "AWS::EC2::VPCCidrBlock": ("ec2", "vpc-cidr-assoc/"),
    "AWS::ECS::CapacityProvider": ("ecs", "capacity-provider/"),
    "AWS::ECS::ClusterCapacityProviderAssociations": ("ecs", "cluster-capacity-providers/"),
    "AWS::Events::EventBusPolicy": ("events", "event-bus-policy/"),
    "AWS::Glue::Database": ("glue", "database/"),
    "AWS::S3::BucketPolicy": ("s3", "bucket-policy/"),
    "AWS::SQS::QueuePolicy": ("sqs", "queue-policy/"),
    "AWS::Transfer::Server": ("transfer", "server/"),
    "AWS::Transfer::User": ("transfer", "user/"),
    "AWS::WAFv2::IPSet": ("wafv2", "regional/ipset/"),
    "AWS::WAFv2::LoggingConfiguration": ("wafv2", "regional/logging/"),
    "AWS::WAFv2::WebACL": ("wafv2", "regional/webacl/"),
    "AWS::WAFv2::WebACLAssociation": ("wafv2", "regional/webacl-association/"),
}
# The name property of a stubbed type, when the template may set it.
STUB_NAME_PROPERTIES = {"AWS::Athena::WorkGroup": "Name", "AWS::CodeBuild::Project": "Name",
                        "AWS::ECS::CapacityProvider": "Name", "AWS::Glue::Database": "DatabaseName",
                        "AWS::WAFv2::IPSet": "Name", "AWS::WAFv2::WebACL": "Name"}  # fmt: skip
CANONICAL_ALB_ZONE_ID = "Z32O12XQLNTSW2"  # eu-west-1's ALB zone; any fixed id satisfies an alias record


def install_shims() -> None:
    """Patch moto once per process (idempotent; the server thread shares the process)."""
    global _INSTALLED
    with _INSTALL_LOCK:
        if _INSTALLED:
            return
        import moto

        if moto.__version__ != MOTO_VERSION:
            raise SandboxError(f"the sandbox shims are written for moto {MOTO_VERSION}, found {moto.__version__}: "
                               f"install the `sandbox` extra (pip install -e '.[sandbox]')")  # fmt: skip
        _MODELS.extend(_stub_model(resource_type, *arn) for resource_type, arn in STUB_TYPES.items())
        _MODELS.extend((_certificate_model(), _secret_model()))
        _patch_getatts()
        _patch_kms_key_policy()
        _patch_route_table_delete()
        _patch_fn_cidr()
        _patch_yaml_short_forms()
        _patch_stacksets()
        _patch_template_url()
        _patch_efs_getatts()
        _patch_custom_resources()
        from moto.cloudformation import parsing

        parsing.get_model_list.cache_clear()
        parsing.get_model_map.cache_clear()
        parsing.get_name_type_map.cache_clear()
        _INSTALLED = True


def _record(resource_type: str, kwargs: dict[str, Any], physical_id: str, account: str, region: str,
            properties: dict[str, Any]) -> None:  # fmt: skip
    with _STUBS_LOCK:
        STUBS.append(Stub(resource_type, kwargs.get("LogicalId", ""), physical_id, account, region, properties))


def _stub_model(resource_type: str, service: str, prefix: str) -> type:
    from moto.core.common_models import CloudFormationModel

    class StubModel(CloudFormationModel):
        def __init__(self, physical_id: str, properties: dict[str, Any]) -> None:
            self.physical_resource_id = physical_id
            self.properties = properties

        @staticmethod
        def cloudformation_name_type() -> str:
            return STUB_NAME_PROPERTIES.get(resource_type, "")

        @staticmethod
        def cloudformation_type() -> str:
            return resource_type

        @classmethod
        def has_cfn_attr(cls, attr: str) -> bool:
            return True

        @classmethod
        def create_from_cloudformation_json(cls, resource_name: str, cloudformation_json: dict[str, Any],
                                            account_id: str, region_name: str, **kwargs: Any) -> StubModel:  # fmt: skip
            properties = cloudformation_json.get("Properties", {})
            arn = f"arn:aws:{service}:{region_name}:{account_id}:{prefix}{resource_name}"
            _record(resource_type, kwargs, arn, account_id, region_name, properties)
            return cls(arn, properties)

        @classmethod
        def update_from_cloudformation_json(cls, original_resource: Any, new_resource_name: str,
                                            cloudformation_json: dict[str, Any], account_id: str,
                                            region_name: str) -> StubModel:  # fmt: skip
            return cls(original_resource.physical_resource_id, cloudformation_json.get("Properties", {}))

        @classmethod
        def delete_from_cloudformation_json(cls, resource_name: str, cloudformation_json: dict[str, Any],
                                            account_id: str, region_name: str) -> None:  # fmt: skip
            return None

        def delete(self, account_id: str, region_name: str) -> None:
            return None

        def get_cfn_attribute(self, attribute_name: str) -> str:
            if attribute_name == "Arn":
                return self.physical_resource_id
            # Ids (ServerId, Id ...) are the last ARN segment; anything else gets a recognisable fake value.
            return self.physical_resource_id.rsplit("/", 1)[-1] if attribute_name.endswith("Id") else \
                f"{self.physical_resource_id}#{attribute_name}"  # fmt: skip

    StubModel.__name__ = StubModel.__qualname__ = "Sandbox" + resource_type.replace("AWS::", "").replace("::", "")
    StubModel.__module__ = f"moto.{service.replace('-', '')}.sandbox"
    return StubModel


def _certificate_model() -> type:
    from moto.acm.models import acm_backends
    from moto.core.common_models import CloudFormationModel

    class SandboxCertificate(CloudFormationModel):
        """AWS::CertificateManager::Certificate in moto's ACM: an HTTPS listener needs a certificate it can find."""

        def __init__(self, arn: str) -> None:
            self.physical_resource_id = arn

        @staticmethod
        def cloudformation_name_type() -> str:
            return ""

        @staticmethod
        def cloudformation_type() -> str:
            return "AWS::CertificateManager::Certificate"

        @classmethod
        def has_cfn_attr(cls, attr: str) -> bool:
            return False

        @classmethod
        def create_from_cloudformation_json(cls, resource_name: str, cloudformation_json: dict[str, Any],
                                            account_id: str, region_name: str, **kwargs: Any) -> Any:  # fmt: skip
            properties = cloudformation_json["Properties"]
            arn = acm_backends[account_id][region_name].request_certificate(
                properties["DomainName"], None, properties.get("SubjectAlternativeNames", []), []
            )
            _record(cls.cloudformation_type(), kwargs, arn, account_id, region_name, properties)
            return cls(arn)

        def delete(self, account_id: str, region_name: str) -> None:
            acm_backends[account_id][region_name].delete_certificate(self.physical_resource_id)

    SandboxCertificate.__module__ = "moto.acm.sandbox"
    return SandboxCertificate


def _secret_model() -> type:
    from moto.core.common_models import CloudFormationModel
    from moto.secretsmanager.models import secretsmanager_backends

    class SandboxSecret(CloudFormationModel):
        """AWS::SecretsManager::Secret in moto's SecretsManager (GenerateSecretString gives a random value)."""

        def __init__(self, arn: str, name: str) -> None:
            self.physical_resource_id = arn
            self.name = name

        @staticmethod
        def cloudformation_name_type() -> str:
            return "Name"

        @staticmethod
        def cloudformation_type() -> str:
            return "AWS::SecretsManager::Secret"

        @classmethod
        def has_cfn_attr(cls, attr: str) -> bool:
            return attr == "Id"

        @classmethod
        def create_from_cloudformation_json(cls, resource_name: str, cloudformation_json: dict[str, Any],
                                            account_id: str, region_name: str, **kwargs: Any) -> Any:  # fmt: skip
            properties = cloudformation_json["Properties"]
            value = properties.get("SecretString")
            if value is None:
                generate = properties.get("GenerateSecretString", {})
                secret = uuid.uuid4().hex
                key = generate.get("GenerateStringKey")
                value = json.dumps({**json.loads(generate["SecretStringTemplate"]), key: secret}) if key else secret
            created = secretsmanager_backends[account_id][region_name].create_secret(
                name=resource_name, secret_string=value, secret_binary=None,
                description=properties.get("Description"), tags=properties.get("Tags"),
                kms_key_id=properties.get("KmsKeyId"), client_request_token=None, replica_regions=[],
                force_overwrite=False)  # fmt: skip
            arn = json.loads(created)["ARN"] if isinstance(created, str) else created["ARN"]
            _record(cls.cloudformation_type(), kwargs, arn, account_id, region_name,
                    {k: v for k, v in properties.items() if k != "SecretString"})  # fmt: skip
            return cls(arn, resource_name)

        def get_cfn_attribute(self, attribute_name: str) -> str:
            return self.physical_resource_id

        def delete(self, account_id: str, region_name: str) -> None:
            secretsmanager_backends[account_id][region_name].delete_secret(
                self.physical_resource_id, recovery_window_in_days=None, force_delete_without_recovery=True
            )

    SandboxSecret.__module__ = "moto.secretsmanager.sandbox"
    return SandboxSecret


def _patch(owner: Any, name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Replace `owner.name` with the decorated function, which receives the original as its first argument."""

    def decorate(function: Callable[..., Any]) -> Callable[..., Any]:
        original = getattr(owner, name, None)

        def patched(*args: Any, **kwargs: Any) -> Any:
            return function(original, *args, **kwargs)

        patched.__name__ = name
        patched.__doc__ = f"sandbox shim around moto's {getattr(owner, '__name__', owner)}.{name}"
        setattr(owner, name, patched)
        return function

    return decorate


def _patch_getatts() -> None:
    from moto.cloudformation.exceptions import UnformattedGetAttTemplateException
    from moto.ec2.models.vpcs import VPC
    from moto.elbv2.models import FakeLoadBalancer, FakeTargetGroup
    from moto.route53.models import FakeZone, Route53Backend

    def zone_attribute(self: Any, attribute_name: str) -> Any:
        if attribute_name == "NameServers":
            return list(self.delegation_set.name_servers)
        if attribute_name == "Id":
            return self.resource_id
        raise UnformattedGetAttTemplateException()

    @_patch(Route53Backend, "create_hosted_zone")
    def create_zone(original: Callable[..., Any], self: Any, *args: Any, **kwargs: Any) -> Any:
        # moto gives every zone the same four name servers; AWS gives each zone its own set, and telling them apart
        # is what shows that each delegation got its own zone's servers.
        zone = original(self, *args, **kwargs)
        if zone.delegation_set is not None and not zone.delegation_set.id:
            n = int(hashlib.sha256(zone.resource_id.encode()).hexdigest()[:6], 16) % 2000
            zone.delegation_set.name_servers[:] = [f"ns-{n + i}.awsdns-{(n + i) % 64:02d}.{tld}"
                                                   for i, tld in enumerate(("com", "net", "org", "co.uk"))]  # fmt: skip
        return zone

    FakeZone.get_cfn_attribute = zone_attribute
    FakeZone.has_cfn_attr = classmethod(lambda cls, attr: attr in ("Id", "NameServers"))

    @_patch(FakeLoadBalancer, "get_cfn_attribute")
    def balancer_attribute(original: Callable[..., Any], self: Any, attribute_name: str) -> Any:
        if attribute_name == "CanonicalHostedZoneID":
            return CANONICAL_ALB_ZONE_ID
        if attribute_name == "LoadBalancerFullName":
            return self.arn.split(":loadbalancer/", 1)[1]
        return original(self, attribute_name)

    def target_group_attribute(self: Any, attribute_name: str) -> Any:
        if attribute_name == "TargetGroupFullName":
            return self.arn.split(":", 5)[5]
        if attribute_name in ("TargetGroupArn", "Arn"):
            return self.arn
        if attribute_name == "TargetGroupName":
            return self.name
        if attribute_name == "LoadBalancerArns":
            return list(self.load_balancer_arns)
        raise UnformattedGetAttTemplateException()

    FakeTargetGroup.get_cfn_attribute = target_group_attribute
    FakeTargetGroup.has_cfn_attr = classmethod(lambda cls, attr: True)

    @_patch(VPC, "get_cfn_attribute")
    def vpc_attribute(original: Callable[..., Any], self: Any, attribute_name: str) -> Any:
        if attribute_name == "Ipv6CidrBlocks":
            # What AWS would assign with AmazonProvidedIpv6CidrBlock (moto has no AWS::EC2::VPCCidrBlock).
            return [f"2600:1f18:{int(self.id[-4:], 16):x}::/56"]
        return original(self, attribute_name)


def _patch_efs_getatts() -> None:
    """moto's EFS models lack Ref/GetAtt support that CloudFormation has (access point Ref is the object's repr)."""
    from moto.efs.models import AccessPoint, FileSystem, MountTarget

    def access_point_attribute(self: Any, attribute_name: str) -> Any:
        return {"Arn": self.access_point_arn, "AccessPointId": self.access_point_id}[attribute_name]

    def file_system_attribute(self: Any, attribute_name: str) -> Any:
        return {"Arn": self.file_system_arn, "FileSystemId": self.file_system_id}[attribute_name]

    AccessPoint.physical_resource_id = property(lambda self: self.access_point_id)  # type: ignore[attr-defined]
    AccessPoint.get_cfn_attribute = access_point_attribute  # type: ignore[attr-defined]
    AccessPoint.has_cfn_attr = classmethod(lambda cls, attr: attr in ("Arn", "AccessPointId"))  # type: ignore[assignment]
    FileSystem.get_cfn_attribute = file_system_attribute  # type: ignore[attr-defined]
    FileSystem.has_cfn_attr = classmethod(lambda cls, attr: attr in ("Arn", "FileSystemId"))  # type: ignore[assignment]
    MountTarget.has_cfn_attr = classmethod(lambda cls, attr: False)  # type: ignore[assignment]


def _patch_custom_resources() -> None:
    """moto runs custom-resource Lambdas in Docker; a rehearsal records them instead (no welcome e-mail is sent)."""
    from moto.cloudformation import parsing

    original = parsing.resource_class_from_type
    custom_stub = _stub_model("Custom::Resource", "cloudformation", "custom-resource/")
    _MODELS.append(custom_stub)

    def resource_class_from_type(resource_type: str) -> Any:
        return custom_stub if resource_type.startswith("Custom::") else original(resource_type)

    parsing.resource_class_from_type = resource_class_from_type


def _patch_kms_key_policy() -> None:
    from moto.kms.models import Key

    @_patch(Key, "create_from_cloudformation_json")
    def create(original: Callable[..., Any], resource_name: str, cloudformation_json: dict[str, Any],
               account_id: str, region_name: str, **kwargs: Any) -> Any:  # fmt: skip
        properties = cloudformation_json["Properties"]
        if isinstance(properties.get("KeyPolicy"), dict):
            properties["KeyPolicy"] = json.dumps(properties["KeyPolicy"])
        return original(resource_name, cloudformation_json, account_id, region_name, **kwargs)

    Key.create_from_cloudformation_json = staticmethod(Key.create_from_cloudformation_json)


def _patch_route_table_delete() -> None:
    from moto.ec2.models.route_tables import RouteTable

    def delete(self: Any, account_id: str, region_name: str) -> None:
        # The stack owns the associations too; moto keeps them and then refuses to delete the table and the VPC.
        self._associations.clear()
        self.ec2_backend.delete_route_table(self.id)

    RouteTable.delete = delete


def _patch_fn_cidr() -> None:
    """Fn::Cidr [block, count, bits]: moto leaves it unresolved."""
    from moto.cloudformation import parsing

    @_patch(parsing, "clean_json")
    def clean_json(original: Callable[..., Any], resource_json: Any, resources_map: Any) -> Any:
        if isinstance(resource_json, dict) and "Fn::Cidr" in resource_json:
            block, count, bits = (parsing.clean_json(v, resources_map) for v in resource_json["Fn::Cidr"])
            network = ipaddress.ip_network(block, strict=False)
            prefix = network.max_prefixlen - int(bits)
            return [str(subnet) for _, subnet in zip(range(int(count)), network.subnets(new_prefix=prefix))]
        return original(resource_json, resources_map)


def _patch_yaml_short_forms() -> None:
    """`!Base64 {Fn::Sub: [...]}`: moto turns a short-form tag on a mapping into raw YAML nodes."""
    import yaml
    from moto.cloudformation import models, responses, utils

    @_patch(utils, "yaml_tag_constructor")
    def constructor(original: Callable[..., Any], loader: Any, tag: str, node: Any) -> Any:
        if isinstance(node, yaml.MappingNode):
            return {"Ref" if tag == "!Ref" else f"Fn::{tag[1:]}": loader.construct_mapping(node, deep=True)}
        if isinstance(node, yaml.SequenceNode) and tag != "!GetAtt":
            return {f"Fn::{tag[1:]}": loader.construct_sequence(node, deep=True)}
        return original(loader, tag, node)

    models.yaml_tag_constructor = responses.yaml_tag_constructor = utils.yaml_tag_constructor


def seed_hosted_zone(account: str, zone_id: str, domain: str) -> None:
    """A public zone with a fixed id in `account`: the existing base zone the network template writes into."""
    from moto.route53.models import route53_backends

    backend = route53_backends[account]["aws"]
    zone = backend.create_hosted_zone(f"{domain}.", private_zone=False)
    backend.zones.pop(zone.resource_id)
    zone.resource_id = zone_id
    backend.zones[zone_id] = zone


def _patch_template_url() -> None:
    """TemplateURL in path style on the sandbox endpoint (moto only knows localhost and amazonaws.com hosts)."""
    from moto.cloudformation import responses, utils

    @_patch(utils, "get_stack_from_s3_url")
    def from_s3(original: Callable[..., Any], template_url: str, account_id: str, partition: str) -> str:
        parts = urlparse(template_url)
        if parts.hostname in ("127.0.0.1", "localhost"):
            from moto.s3.models import s3_backends

            bucket, key = unquote(parts.path).lstrip("/").split("/", 1)
            return s3_backends[account_id][partition].get_object(bucket, key).value.decode("utf-8")
        return original(template_url, account_id, partition)

    responses.get_stack_from_s3_url = utils.get_stack_from_s3_url


# --- StackSets ------------------------------------------------------------------------------------------------------


def _error(code: str, message: str) -> Exception:
    from moto.cloudformation.exceptions import CloudFormationError

    error = CloudFormationError(message)
    error.code = code
    return error


class SandboxStackInstance:
    """A stack instance whose stack is a real, visible stack `StackSet-<name>-<uuid>` in its account and region."""

    def __init__(self, stackset: Any, account: str, region: str, overrides: list[dict[str, Any]],
                 organizational_unit: str | None) -> None:  # fmt: skip
        self.stackset_id = stackset.id
        self.account_id = account
        self.region_name = region
        self.parameters = overrides  # moto's name: these are the instance's ParameterOverrides
        self.organizational_unit = organizational_unit
        self.stack_name = f"StackSet-{stackset.name}-{uuid.uuid4()}"
        self.stack: Any = None
        self.status, self.detailed_status, self.reason = "CURRENT", "SUCCEEDED", ""
        self._deploy(stackset, create=True)

    def _backend(self) -> Any:
        from moto.cloudformation.models import cloudformation_backends

        return cloudformation_backends[self.account_id][self.region_name]

    def _deploy(self, stackset: Any, create: bool) -> None:
        overrides = {p["ParameterKey"]: p["ParameterValue"] for p in self.parameters if "ParameterValue" in p}
        parameters = {**stackset.parameters, **overrides}
        backend = self._backend()
        try:
            if create:
                self.stack = backend.create_stack(name=self.stack_name, template=stackset.template,
                                                  parameters=parameters)  # fmt: skip
            else:
                backend.update_stack(self.stack_name, template=stackset.template, role_arn=None, tags=None,
                                     parameters=[{"ParameterKey": k, "ParameterValue": v}
                                                 for k, v in parameters.items()])  # fmt: skip
            self.status, self.detailed_status, self.reason = "CURRENT", "SUCCEEDED", ""
        except Exception as error:  # noqa: BLE001 - a failed stack is a failed instance, as in AWS
            self.status, self.detailed_status = "OUTDATED", "FAILED"
            self.reason = f"{type(error).__name__}: {error}"
            stacks = [s for s in backend.stacks.values() if s.name == self.stack_name]
            if stacks:
                self.stack = stacks[0]
                failed = "CREATE_FAILED" if create else "UPDATE_FAILED"
                self.stack.status = failed
                self.stack._add_stack_event(failed, resource_status_reason=str(error))

    def update(self, stackset: Any) -> None:
        if self.stack is None or self.stack.status == "CREATE_FAILED":
            return self._replace(stackset)
        self._deploy(stackset, create=False)

    def _replace(self, stackset: Any) -> None:
        self.delete(retain=False)
        self.stack_name = f"StackSet-{stackset.name}-{uuid.uuid4()}"
        self._deploy(stackset, create=True)

    def delete(self, retain: bool = False) -> None:
        if self.stack is not None and not retain:
            self._backend().delete_stack(self.stack.stack_id)

    def to_dict(self) -> dict[str, Any]:
        summary = {"StackSetId": self.stackset_id, "Region": self.region_name, "Account": self.account_id,
                   "Status": self.status, "StackInstanceStatus": {"DetailedStatus": self.detailed_status},
                   "ParameterOverrides": self.parameters, "DriftStatus": "NOT_CHECKED"}  # fmt: skip
        if self.stack is not None:
            summary["StackId"] = self.stack.stack_id
        if self.reason:
            summary["StatusReason"] = self.reason
        if self.organizational_unit:
            summary["OrganizationalUnitId"] = self.organizational_unit
        return summary


def _organization_accounts(stackset: Any, ous: list[str]) -> dict[str, str]:
    """account -> OU for every account in the OUs and their descendants (as AWS expands OU targets)."""
    org = stackset.instances.org_backend
    wanted, pending = set(), list(ous)
    while pending:
        ou = pending.pop()
        if ou not in wanted:
            wanted.add(ou)
            pending += [child.id for child in org.ou if child.parent_id == ou]
    return {account.id: account.parent_id for account in org.accounts if account.parent_id in wanted}


def _targets(stackset: Any, accounts: list[str], regions: list[str], deployment_targets: dict[str, Any] | None,
             action: str) -> list[tuple[str, str, str | None]]:  # fmt: skip
    """(account, region, OU) pairs an operation touches, honouring AccountFilterType."""
    from moto.cloudformation.exceptions import ValidationError

    targets = deployment_targets or {}
    ous = targets.get("OrganizationalUnitIds") or []
    named = list(accounts) + list(targets.get("Accounts") or [])
    if stackset.permission_model == "SERVICE_MANAGED":
        if not ous and action == "CREATE":
            raise ValidationError(message="StackSets with SERVICE_MANAGED permission model can only have "
                                  "OrganizationalUnit as target")  # fmt: skip
        in_ous = _organization_accounts(stackset, ous)
        kind = targets.get("AccountFilterType", "NONE")
        if kind == "INTERSECTION":
            chosen = {a: ou for a, ou in in_ous.items() if a in named}
        elif kind == "DIFFERENCE":
            chosen = {a: ou for a, ou in in_ous.items() if a not in named}
        elif kind == "UNION":
            chosen = {**dict.fromkeys(named), **in_ous}
        else:
            chosen = in_ous
    else:
        if ous:
            raise ValidationError(message="StackSets with SELF_MANAGED permission model can only have accounts as "
                                  "target")  # fmt: skip
        chosen = dict.fromkeys(named)
    return [(account, region, ou) for region in regions for account, ou in sorted(chosen.items())]


def _tolerance(preferences: dict[str, Any], count: int) -> int:
    if "FailureToleranceCount" in preferences:
        return int(preferences["FailureToleranceCount"])
    return int(preferences.get("FailureTolerancePercentage", 0)) * count // 100


def _record_operation(stackset: Any, operation_id: str | None, action: str, results: list[dict[str, Any]],
                      preferences: dict[str, Any]) -> str:  # fmt: skip
    from moto.core.utils import utcnow

    operation_id = operation_id or str(uuid.uuid4())
    if any(op["OperationId"] == operation_id for op in stackset.operations):
        raise _error("OperationIdAlreadyExistsException", f"The operation id {operation_id} already exists")
    failed = sum(1 for r in results if r["Status"] == "FAILED")
    stackset.operations.append({
        "OperationId": operation_id, "Action": action, "CreationTimestamp": utcnow(), "EndTimestamp": utcnow(),
        "Status": "FAILED" if failed > _tolerance(preferences, len(results)) else "SUCCEEDED",
        "Instances": [{r["Account"]: r["Region"]} for r in results], "Results": results})  # fmt: skip
    return operation_id


def _result(instance: SandboxStackInstance | None, account: str, region: str, ou: str | None) -> dict[str, Any]:
    result: dict[str, Any] = {
        "Account": account,
        "Region": region,
        "Status": "SUCCEEDED",
        "AccountGateResult": {"Status": "SKIPPED", "StatusReason": "no account gate"},
    }
    if instance is not None and instance.detailed_status == "FAILED":
        result.update(Status="FAILED", StatusReason=instance.reason)
    if ou:
        result["OrganizationalUnitId"] = ou
    return result


def _patch_stacksets() -> None:
    from moto.cloudformation.models import CloudFormationBackend, Stack, StackSet
    from moto.cloudformation.responses import CloudFormationResponse
    from moto.core.responses import ActionResult

    def create_stack_instances(stackset: Any, accounts: list[str], regions: list[str], targets: dict[str, Any] | None,
                               overrides: list[dict[str, Any]], operation_id: str | None,
                               preferences: dict[str, Any]) -> str:  # fmt: skip
        results = []
        for account, region, ou in _targets(stackset, accounts, regions, targets, "CREATE"):
            instance = stackset.instances.get_instance(account, region)
            if instance is None:  # AWS: creating an existing instance is a no-op
                instance = SandboxStackInstance(stackset, account, region, overrides, ou)
                stackset.instances.stack_instances.append(instance)
            results.append(_result(instance, account, region, ou))
        return _record_operation(stackset, operation_id, "CREATE", results, preferences)

    def update_instances(stackset: Any, pairs: list[tuple[str, str, str | None]],
                         overrides: list[dict[str, Any]] | None, operation_id: str | None,
                         preferences: dict[str, Any]) -> str:  # fmt: skip
        results = []
        for account, region, ou in pairs:
            instance = stackset.instances.get_instance(account, region)
            if instance is None:
                from moto.cloudformation.exceptions import StackInstanceNotFound

                raise StackInstanceNotFound()
            if overrides is not None:  # AWS: a list replaces the overrides; UsePreviousValue keeps one
                previous = {o["ParameterKey"]: o for o in instance.parameters}
                instance.parameters = [previous.get(o["ParameterKey"], o) if o.get("UsePreviousValue") else o
                                       for o in overrides]  # fmt: skip
            instance.update(stackset)
            results.append(_result(instance, account, region, ou or instance.organizational_unit))
        return _record_operation(stackset, operation_id, "UPDATE", results, preferences)

    def params(response: Any) -> dict[str, Any]:
        return response._get_params()

    def create_response(self: Any) -> ActionResult:
        p = params(self)
        stackset = self.cloudformation_backend.describe_stack_set(p["StackSetName"])
        operation_id = create_stack_instances(stackset, p.get("Accounts", []), p.get("Regions", []),
                                              p.get("DeploymentTargets"), p.get("ParameterOverrides", []),
                                              p.get("OperationId"), p.get("OperationPreferences", {}))  # fmt: skip
        return ActionResult({"OperationId": operation_id})

    def update_instances_response(self: Any) -> ActionResult:
        p = params(self)
        stackset = self.cloudformation_backend.describe_stack_set(p["StackSetName"])
        pairs = _targets(stackset, p.get("Accounts", []), p.get("Regions", []), p.get("DeploymentTargets"), "UPDATE")
        pairs = [pair for pair in pairs if stackset.instances.get_instance(pair[0], pair[1]) is not None]
        operation_id = update_instances(stackset, pairs, p.get("ParameterOverrides"), p.get("OperationId"),
                                        p.get("OperationPreferences", {}))  # fmt: skip
        return ActionResult({"OperationId": operation_id})

    def update_stack_set_response(self: Any) -> ActionResult:
        p = params(self)
        stackset = self.cloudformation_backend.describe_stack_set(p["StackSetName"])
        if p.get("TemplateURL"):
            stackset.template = self._get_stack_from_s3_url(p["TemplateURL"])
        elif p.get("TemplateBody"):
            stackset.template = p["TemplateBody"]
        if "Parameters" in p:
            stackset.parameters = self.cloudformation_backend._resolve_update_parameters(stackset, p["Parameters"])
        if "Description" in p:
            stackset.description = p["Description"]
        if "AutoDeployment" in p:
            stackset.auto_deployment = p["AutoDeployment"]
        if p.get("Accounts") or p.get("DeploymentTargets"):
            pairs = _targets(stackset, p.get("Accounts", []), p.get("Regions", []), p.get("DeploymentTargets"),
                             "UPDATE")  # fmt: skip
        else:  # AWS: without targets, every instance is updated
            pairs = [(i.account_id, i.region_name, i.organizational_unit) for i in stackset.instances.stack_instances]
        pairs = [pair for pair in pairs if stackset.instances.get_instance(pair[0], pair[1]) is not None]
        operation_id = update_instances(stackset, pairs, None, p.get("OperationId"), p.get("OperationPreferences", {}))
        return ActionResult({"OperationId": operation_id})

    def delete_response(self: Any) -> ActionResult:
        p = params(self)
        stackset = self.cloudformation_backend.describe_stack_set(p["StackSetName"])
        results = []
        for account, region, ou in _targets(stackset, p.get("Accounts", []), p.get("Regions", []),
                                            p.get("DeploymentTargets"), "DELETE"):  # fmt: skip
            instance = stackset.instances.get_instance(account, region)
            if instance is not None:
                instance.delete(retain=bool(p.get("RetainStacks")))
                stackset.instances.stack_instances.remove(instance)
            results.append(_result(None, account, region, ou))
        operation_id = _record_operation(stackset, p.get("OperationId"), "DELETE", results,
                                         p.get("OperationPreferences", {}))  # fmt: skip
        return ActionResult({"OperationId": operation_id})

    def operation_results_response(self: Any) -> ActionResult:
        p = params(self)
        operation = self.cloudformation_backend.list_stack_set_operation_results(p["StackSetName"], p["OperationId"])
        return ActionResult({"Summaries": operation.get("Results", [])})

    CloudFormationResponse.create_stack_instances = create_response
    CloudFormationResponse.update_stack_instances = update_instances_response
    CloudFormationResponse.update_stack_set = update_stack_set_response
    CloudFormationResponse.delete_stack_instances = delete_response
    CloudFormationResponse.list_stack_set_operation_results = operation_results_response

    @_patch(CloudFormationBackend, "create_stack_set")
    def create_stack_set(original: Callable[..., Any], self: Any, name: str, *args: Any, **kwargs: Any) -> Any:
        if any(s.name == name and s.status != "DELETED" for s in self.stacksets.values()):
            raise _error("NameAlreadyExistsException", f"StackSet {name} already exists")
        return original(self, name, *args, **kwargs)

    @_patch(CloudFormationResponse, "create_stack_set")
    def create_stack_set_response(original: Callable[..., Any], self: Any) -> Any:
        result = original(self)
        auto_deployment = params(self).get("AutoDeployment")
        if auto_deployment:
            stackset = self.cloudformation_backend.describe_stack_set(params(self)["StackSetName"])
            stackset.auto_deployment = auto_deployment
        return result

    StackSet.auto_deployment = None

    def parameter_list(self: Any) -> list[dict[str, Any]]:
        # moto shows list parameters as a Python repr and checks NoEcho against values instead of keys.
        resource_map = self.resource_map
        return [{"ParameterKey": key,
                 "ParameterValue": "****" if key in resource_map.no_echo_parameter_keys
                 else ",".join(map(str, value)) if isinstance(value, list) else str(value)}
                for key, value in resource_map.resolved_parameters.items()]  # fmt: skip

    Stack.parameter_list = property(parameter_list)
