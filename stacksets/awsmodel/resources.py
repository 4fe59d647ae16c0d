"""What each resource type looks like once CloudFormation has created it: its Ref value, its GetAtt attributes, the
property that names it and where that name must be unique.

Ref and attribute shapes follow the "Return values" section of each type's page in the CloudFormation resource
reference (https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-template-resource-type-ref.html).
Every value is derived from a hash of the stack and logical id, so one world always yields the same ids.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any

# Where a physical name must be unique (rule "names"): S3 bucket names are global per partition, IAM names per
# account, the rest per account and Region.
PARTITION, ACCOUNT, REGION = "partition", "account", "region"


@dataclass(frozen=True)
class Spec:
    ref: str                        # "name", "arn", or a format string such as "vpc-{hex}"
    arn: str = ""                   # format fields: p r a name hex uuid suffix
    attributes: dict[str, str] = field(default_factory=dict)
    name_property: str = ""         # dotted path for nested names (Glue DatabaseInput.Name)
    scope: str = REGION
    max_name: int = 64
    lowercase: bool = False
    exists: str = ""                # AlreadyExists wording; empty means CloudFormation's generic registry wording
    unique: bool = True             # False where the name is unique only inside a parent (service in a cluster)


GENERIC_EXISTS = "Resource of type '{type}' with identifier '{name}' already exists."
_ARN = "arn:{p}:{service}:{r}:{a}:"


def _arn(service: str, rest: str, *, regional: bool = True) -> str:
    base = _ARN if regional else "arn:{p}:{service}::{a}:"
    return base.replace("{service}", service) + rest


def _id(prefix: str, attr: str) -> Spec:
    return Spec(ref=prefix + "{hex}", attributes={attr: "{ref}"} if attr else {})


SPECS: dict[str, Spec] = {
    "AWS::IAM::Role": Spec("name", _arn("iam", "role/{name}", regional=False),
                           {"Arn": "{arn}", "RoleId": "AROA{HEX}"}, "RoleName", ACCOUNT,
                           exists="Role with name {name} already exists."),
    "AWS::IAM::Policy": Spec("{stackpart}-{HEX}", attributes={"Id": "{ref}"}),
    "AWS::IAM::ManagedPolicy": Spec("arn", _arn("iam", "policy/{name}", regional=False),
                                    {"PolicyArn": "{arn}", "PolicyId": "ANPA{HEX}"}, "ManagedPolicyName", ACCOUNT,
                                    exists="A policy called {name} already exists. Duplicate names are not allowed."),
    "AWS::IAM::InstanceProfile": Spec("name", _arn("iam", "instance-profile/{name}", regional=False),
                                      {"Arn": "{arn}"}, "InstanceProfileName", ACCOUNT,
                                      exists="Instance Profile {name} already exists."),
    "AWS::KMS::Key": Spec("{uuid}", _arn("kms", "key/{uuid}"), {"Arn": "{arn}", "KeyId": "{uuid}"}),
    "AWS::KMS::Alias": Spec("name", name_property="AliasName", max_name=256,
                            exists="An alias with the name arn:{p}:kms:{r}:{a}:{name} already exists"),
    "AWS::S3::Bucket": Spec("name", "arn:{p}:s3:::{name}",
                            {"Arn": "{arn}", "DomainName": "{name}.s3.{suffix}",
                             "RegionalDomainName": "{name}.s3.{r}.{suffix}",
                             "DualStackDomainName": "{name}.s3.dualstack.{r}.{suffix}",
                             "WebsiteURL": "http://{name}.s3-website-{r}.{suffix}"},
                            "BucketName", PARTITION, 63, True, exists="{name} already exists"),
    "AWS::S3::BucketPolicy": Spec("{stackpart}-{HEX}"),
    "AWS::SecretsManager::Secret": Spec("arn", _arn("secretsmanager", "secret:{name}-{rand6}"), {"Id": "{arn}"},
                                        "Name", max_name=512,
                                        exists="The operation failed because the secret {name} already exists."),
    "AWS::ECR::Repository": Spec("name", _arn("ecr", "repository/{name}"),
                                 {"Arn": "{arn}", "RepositoryUri": "{a}.dkr.ecr.{r}.{suffix}/{name}"},
                                 "RepositoryName", max_name=256, lowercase=True,
                                 exists="The repository with name '{name}' already exists in the registry with id"
                                        " '{a}'"),
    "AWS::Logs::LogGroup": Spec("name", _arn("logs", "log-group:{name}:*"), {"Arn": "{arn}"}, "LogGroupName",
                                max_name=512),
    "AWS::Logs::ResourcePolicy": Spec("name", name_property="PolicyName", max_name=255),
    "AWS::CodeBuild::Project": Spec("name", _arn("codebuild", "project/{name}"), {"Arn": "{arn}"}, "Name",
                                    max_name=150),
    "AWS::Lambda::Function": Spec("name", _arn("lambda", "function:{name}"), {"Arn": "{arn}"}, "FunctionName"),
    "AWS::Lambda::Permission": Spec("{stackpart}-{HEX}"),
    "AWS::Lambda::EventInvokeConfig": Spec("{stackpart}-{HEX}"),
    "AWS::Events::Rule": Spec("name", _arn("events", "rule/{name}"), {"Arn": "{arn}"}, "Name"),
    "AWS::Events::EventBusPolicy": Spec("{stackpart}-{HEX}"),
    "AWS::SQS::Queue": Spec("https://sqs.{r}.{suffix}/{a}/{name}", _arn("sqs", "{name}"),
                            {"Arn": "{arn}", "QueueName": "{name}", "QueueUrl": "{ref}"}, "QueueName", max_name=80),
    "AWS::SQS::QueuePolicy": Spec("{stackpart}-{HEX}", attributes={"Id": "{ref}"}),
    "AWS::SNS::Topic": Spec("arn", _arn("sns", "{name}"), {"TopicArn": "{arn}", "TopicName": "{name}"}, "TopicName",
                            max_name=256),
    "AWS::SNS::TopicPolicy": Spec("{stackpart}-{HEX}", attributes={"Id": "{ref}"}),
    # The subscription's ARN is the topic's with a UUID; the type has no GetAtt attributes.
    "AWS::SNS::Subscription": Spec("{TopicArn}:{uuid}"),
    "AWS::CloudWatch::Alarm": Spec("name", _arn("cloudwatch", "alarm:{name}"), {"Arn": "{arn}"}, "AlarmName",
                                   max_name=255),
    "AWS::Athena::WorkGroup": Spec("name", attributes={"CreationTime": "2026-01-01T00:00:00Z"}, name_property="Name",
                                   max_name=128),
    "AWS::Glue::Database": Spec("name", name_property="DatabaseInput.Name", max_name=255, lowercase=True),
    "AWS::Transfer::Server": Spec("arn", _arn("transfer", "server/s-{hex}"), {"Arn": "{arn}", "ServerId": "s-{hex}"}),
    "AWS::Transfer::User": Spec("arn", _arn("transfer", "user/{ServerId}/{name}"),
                                {"Arn": "{arn}", "ServerId": "{ServerId}", "UserName": "{name}"}, "UserName",
                                unique=False),
    "AWS::Route53::HostedZone": Spec("Z{HEX}", attributes={"Id": "{ref}"}),
    "AWS::Route53::RecordSet": Spec("{Name}"),
    "AWS::Route53::RecordSetGroup": Spec("{stackpart}-{HEX}"),
    "AWS::CertificateManager::Certificate": Spec("arn", _arn("acm", "certificate/{uuid}")),
    "AWS::EC2::VPC": Spec("vpc-{hex}", attributes={
        "VpcId": "{ref}", "CidrBlock": "{CidrBlock}", "DefaultSecurityGroup": "sg-{hex2}",
        "DefaultNetworkAcl": "acl-{hex2}", "CidrBlockAssociations": "vpc-cidr-assoc-{hex}"}),
    "AWS::EC2::VPCCidrBlock": Spec("vpc-cidr-assoc-{hex}", attributes={"Id": "{ref}"}),
    "AWS::EC2::Subnet": Spec("subnet-{hex}", attributes={
        "SubnetId": "{ref}", "VpcId": "{VpcId}", "AvailabilityZone": "{AvailabilityZone}",
        "CidrBlock": "{CidrBlock}", "NetworkAclAssociationId": "aclassoc-{hex}"}),
    "AWS::EC2::SecurityGroup": Spec("sg-{hex}", attributes={"GroupId": "{ref}", "VpcId": "{VpcId}"}),
    "AWS::EC2::SecurityGroupIngress": _id("sgr-", "Id"),
    "AWS::EC2::SecurityGroupEgress": _id("sgr-", "Id"),
    "AWS::EC2::RouteTable": _id("rtb-", "RouteTableId"),
    "AWS::EC2::Route": Spec("rtb-{hex}|0.0.0.0/0"),
    "AWS::EC2::SubnetRouteTableAssociation": _id("rtbassoc-", "Id"),
    "AWS::EC2::InternetGateway": _id("igw-", "InternetGatewayId"),
    "AWS::EC2::VPCGatewayAttachment": Spec("IGW|{VpcId}"),
    "AWS::EC2::EIP": Spec("{ip}", attributes={"AllocationId": "eipalloc-{hex}", "PublicIp": "{ref}"}),
    "AWS::EC2::NatGateway": _id("nat-", "NatGatewayId"),
    "AWS::EC2::FlowLog": _id("fl-", "Id"),
    "AWS::EC2::LaunchTemplate": Spec("lt-{hex}", attributes={
        "LaunchTemplateId": "{ref}", "LatestVersionNumber": "1", "DefaultVersionNumber": "1"},
        name_property="LaunchTemplateName", max_name=128),
    "AWS::ECS::Cluster": Spec("name", _arn("ecs", "cluster/{name}"), {"Arn": "{arn}"}, "ClusterName", max_name=255),
    "AWS::ECS::Service": Spec("arn", _arn("ecs", "service/{cluster}/{name}"), {"Name": "{name}", "ServiceArn": "{arn}"},
                              "ServiceName", max_name=255, unique=False),
    "AWS::ECS::TaskDefinition": Spec("arn", _arn("ecs", "task-definition/{name}:1"), {"TaskDefinitionArn": "{arn}"},
                                     "Family", max_name=255, unique=False),
    "AWS::ECS::CapacityProvider": Spec("name", name_property="Name", max_name=255),
    "AWS::ECS::ClusterCapacityProviderAssociations": Spec("{Cluster}"),
    "AWS::EFS::FileSystem": Spec("fs-{hex}", _arn("elasticfilesystem", "file-system/{ref}"),
                                 {"FileSystemId": "{ref}", "Arn": "{arn}"}),
    "AWS::EFS::AccessPoint": Spec("fsap-{hex}", _arn("elasticfilesystem", "access-point/{ref}"),
                                  {"AccessPointId": "{ref}", "Arn": "{arn}"}),
    "AWS::EFS::MountTarget": Spec("fsmt-{hex}", attributes={"Id": "{ref}", "IpAddress": "10.0.0.{byte}"}),
    "AWS::ElasticLoadBalancingV2::LoadBalancer": Spec(
        "arn", _arn("elasticloadbalancing", "loadbalancer/{lbfull}"),
        {"DNSName": "{name}-{num}.{r}.elb.{suffix}", "CanonicalHostedZoneID": "{elbzone}",
         "LoadBalancerFullName": "{lbfull}", "LoadBalancerName": "{name}", "LoadBalancerArn": "{arn}",
         "SecurityGroups": "{SecurityGroups}"}, "Name", max_name=32),
    "AWS::ElasticLoadBalancingV2::TargetGroup": Spec(
        "arn", _arn("elasticloadbalancing", "{tgfull}"),
        {"TargetGroupFullName": "{tgfull}", "TargetGroupName": "{name}", "TargetGroupArn": "{arn}",
         "LoadBalancerArns": "[]"}, "Name", max_name=32),
    "AWS::ElasticLoadBalancingV2::Listener": Spec("{LoadBalancerArn|listener}/{hex16}",
                                                  attributes={"ListenerArn": "{ref}"}),
    "AWS::ElasticLoadBalancingV2::ListenerRule": Spec("{ListenerArn|listener-rule}/{hex16}",
                                                      attributes={"RuleArn": "{ref}"}),
    "AWS::ElasticLoadBalancingV2::ListenerCertificate": Spec("{stackpart}-{HEX}"),
    "AWS::WAFv2::IPSet": Spec("{name}|{uuid}|{Scope}", _arn("wafv2", "regional/ipset/{name}/{uuid}"),
                              {"Arn": "{arn}", "Id": "{uuid}"}, "Name", max_name=128),
    "AWS::WAFv2::WebACL": Spec("{name}|{uuid}|{Scope}", _arn("wafv2", "regional/webacl/{name}/{uuid}"),
                               {"Arn": "{arn}", "Id": "{uuid}", "Capacity": "0", "LabelNamespace": "awswaf:{a}:"},
                               "Name", max_name=128),
    "AWS::WAFv2::LoggingConfiguration": Spec("{ResourceArn}"),
    "AWS::WAFv2::WebACLAssociation": Spec("{stackpart}-{HEX}"),
    "AWS::DataSync::LocationEFS": Spec("arn", _arn("datasync", "location/loc-{hex}"),
                                       {"LocationArn": "{arn}", "LocationUri": "efs://{r}.fs-{hex}/"}),
    "AWS::DataSync::LocationS3": Spec("arn", _arn("datasync", "location/loc-{hex}"),
                                      {"LocationArn": "{arn}", "LocationUri": "s3://{S3BucketArn|bucket}/"}),
    "AWS::DataSync::Task": Spec("arn", _arn("datasync", "task/task-{hex}"), {"TaskArn": "{arn}"}, "Name",
                                unique=False),
    "AWS::ApplicationAutoScaling::ScalableTarget": Spec("{ResourceId}|{ScalableDimension}|{ServiceNamespace}",
                                                        attributes={"Id": "{ref}"}),
    "AWS::ApplicationAutoScaling::ScalingPolicy": Spec(
        "arn", _arn("autoscaling", "scalingPolicy:{uuid}:resource/{ResourceId}:policyName/{name}"), {"Arn": "{arn}"},
        "PolicyName", max_name=256, unique=False),
    "AWS::AutoScaling::AutoScalingGroup": Spec("name", name_property="AutoScalingGroupName", max_name=255),
    "AWS::CloudFormation::WaitConditionHandle": Spec("https://cloudformation-waitcondition-{r}.s3.{suffix}/{HEX}"),
}

# ELB's own hosted zone per Region, which Route 53 alias records must name (ELB endpoints page,
# https://docs.aws.amazon.com/general/latest/gr/elb.html); other Regions get a well-formed stand-in.
ELB_ZONES = {"us-east-1": "Z35SXDOTRQ7X7K", "us-east-2": "Z3AADJGX6KTTL2", "us-west-2": "Z1H1FL5HABSF5",
             "eu-west-1": "Z32O12XQLNTSW2", "eu-central-1": "Z215JYRZR1TBD5", "eu-west-2": "ZHURV8PSTC4K8"}


def is_custom(resource_type: str) -> bool:
    return resource_type.startswith("Custom::") or resource_type == "AWS::CloudFormation::CustomResource"


def known_attributes(resource_type: str) -> set[str] | None:
    """The GetAtt names a type supports, or None when any name may be asked (custom and unmodelled types)."""
    spec = SPECS.get(resource_type)
    if spec is None or is_custom(resource_type):
        return None
    names = set(spec.attributes)
    if resource_type == "AWS::EC2::VPC":
        names.add("Ipv6CidrBlocks")
    if resource_type == "AWS::EC2::Subnet":
        names.update({"Ipv6CidrBlocks", "AvailabilityZoneId"})
    if resource_type == "AWS::Route53::HostedZone":
        names.add("NameServers")
    return names


def digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def _get(props: dict[str, Any], path: str) -> Any:
    value: Any = props
    for key in path.split("."):
        value = value.get(key) if isinstance(value, dict) else None
    return value


def given_name(resource_type: str, props: dict[str, Any]) -> str | None:
    spec = SPECS.get(resource_type)
    if spec is None or not spec.name_property:
        return None
    value = _get(props, spec.name_property)
    return str(value) if value is not None else None


def generated_name(stack_name: str, logical_id: str, seed: str, max_len: int = 64, lowercase: bool = False) -> str:
    """`<stack>-<LogicalId>-<RANDOM>`, both prefixes cut to fit the type's limit as CloudFormation does."""
    random_part = digest(seed, "name")[:12].upper()
    budget = max_len - len(random_part) - 2
    stack_part = stack_name[: max(1, budget // 2)] if len(stack_name) + len(logical_id) > budget else stack_name
    logical_part = logical_id[: max(1, budget - len(stack_part))]
    name = f"{stack_part}-{logical_part}-{random_part}"
    return name.lower() if lowercase else name


def unique_key(resource_type: str, name: str, partition: str, account: str, region: str) -> tuple[str, ...] | None:
    spec = SPECS.get(resource_type)
    if spec is None or not spec.name_property or not spec.unique:
        return None
    scope = {PARTITION: (partition,), ACCOUNT: (partition, account), REGION: (partition, account, region)}[spec.scope]
    return (resource_type, *scope, name)


def exists_message(resource_type: str, name: str, partition: str, account: str, region: str) -> str:
    wording = SPECS[resource_type].exists or GENERIC_EXISTS
    return wording.format(type=resource_type, name=name, p=partition, a=account, r=region)


@dataclass(frozen=True)
class Placement:
    """Where a resource is created and the seed its generated ids come from."""

    partition: str
    account: str
    region: str
    url_suffix: str
    stack_name: str
    seed: str


_FIELD = re.compile(r"\{([A-Za-z0-9_|]+)\}")
_LIST_ATTRIBUTES = {"SecurityGroups", "LoadBalancerArns", "CidrBlockAssociations"}
_TRANSFORMS = {"listener": lambda arn: arn.replace(":loadbalancer/", ":listener/"),
               "listener-rule": lambda arn: arn.replace(":listener/", ":listener-rule/"),
               "bucket": lambda arn: arn.split(":::")[-1]}


def _uuid(hexdigest: str) -> str:
    h = hexdigest
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:32]}"


def _fields(spec: Spec, resource_type: str, props: dict[str, Any], at: Placement, name: str) -> dict[str, Any]:
    h = digest(at.seed)
    b = bytes.fromhex(h[:8])
    fields = {"p": at.partition, "r": at.region, "a": at.account, "suffix": at.url_suffix, "name": name,
              "hex": h[:17], "hex2": h[17:34], "hex16": h[:16], "HEX": h[:17].upper(), "uuid": _uuid(h),
              "rand6": h[34:40], "ip": f"52.{b[0]}.{b[1]}.{max(1, b[2])}", "num": str(int(h[:8], 16) % 10**9),
              "byte": str(1 + b[3] % 254), "stackpart": f"{at.stack_name[:5]}-{h[:5].upper()}",
              "elbzone": ELB_ZONES.get(at.region, "Z" + h[:13].upper()),
              "cluster": str(props.get("Cluster", "default")).rsplit("/", 1)[-1],
              "lbfull": f"{'net' if props.get('Type') == 'network' else 'app'}/{name}/{h[:16]}",
              "tgfull": f"targetgroup/{name}/{h[:16]}", "AvailabilityZone": f"{at.region}a"}
    fields.update({k: v for k, v in props.items() if isinstance(v, (str, int, list))})
    return fields


def _format(pattern: str, fields: dict[str, Any]) -> Any:
    def one(match: re.Match[str]) -> str:
        key, _, transform = match.group(1).partition("|")
        value = fields.get(key, "")
        value = ",".join(map(str, value)) if isinstance(value, list) else str(value)
        return _TRANSFORMS[transform](value) if transform else value

    if pattern.startswith("{") and pattern.endswith("}") and pattern.count("{") == 1:
        value = fields.get(pattern[1:-1])
        if isinstance(value, list):
            return value
    return _FIELD.sub(one, pattern)


def name_servers(seed: str) -> list[str]:
    """Four servers in the four Route 53 name-server domains, different for every zone."""
    h = digest(seed, "ns")
    return [f"ns-{int(h[i * 4:i * 4 + 3], 16) % 2048}.awsdns-{int(h[i * 4 + 3], 16) * 4 % 64:02d}.{tld}"
            for i, tld in enumerate(("com", "net", "org", "co.uk"))]


def materialize(resource_type: str, logical_id: str, props: dict[str, Any], at: Placement
                ) -> tuple[str, dict[str, Any], str | None]:
    """The physical id (the Ref value), the GetAtt attributes and the physical name of a newly created resource."""
    spec = SPECS.get(resource_type, Spec("{stackpart}-{HEX}"))
    name = given_name(resource_type, props)
    if name is None and (spec.name_property or spec.ref == "name"):
        name = generated_name(at.stack_name, logical_id, at.seed, spec.max_name, spec.lowercase)
    fields = _fields(spec, resource_type, props, at, name or "")
    fields["arn"] = _format(spec.arn, fields) if spec.arn else ""
    ref = {"name": name or "", "arn": fields["arn"]}.get(spec.ref) or _format(spec.ref, fields)
    fields["ref"] = ref
    if spec.arn and "{ref}" in spec.arn:
        fields["arn"] = _format(spec.arn, fields)
        ref = fields["arn"] if spec.ref == "arn" else ref
    attributes: dict[str, Any] = {key: _format(pattern, fields) for key, pattern in spec.attributes.items()}
    for key in _LIST_ATTRIBUTES & attributes.keys():
        if not isinstance(attributes[key], list):
            attributes[key] = [attributes[key]] if attributes[key] not in ("", "[]") else []
    _special_attributes(resource_type, props, at, attributes)
    return ref, attributes, name


def _special_attributes(resource_type: str, props: dict[str, Any], at: Placement, attributes: dict[str, Any]) -> None:
    h = digest(at.seed, "v6")
    if resource_type == "AWS::EC2::VPC":
        # Amazon-provided IPv6 blocks are /56 (VPC user guide, "IPv6 VPC CIDR blocks").
        attributes["Ipv6CidrBlocks"] = [str(ipaddress.IPv6Network(f"2600:1f18:{h[:4]}:{h[4:6]}00::/56"))]
    elif resource_type == "AWS::EC2::Subnet":
        attributes["Ipv6CidrBlocks"] = [props["Ipv6CidrBlock"]] if props.get("Ipv6CidrBlock") else []
        attributes["AvailabilityZoneId"] = f"{at.region[:3]}{at.region[-1]}-az1"
    elif resource_type == "AWS::Route53::HostedZone":
        attributes["NameServers"] = name_servers(at.seed)
