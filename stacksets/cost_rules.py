"""How each resource type of a template is priced: `RULES` maps a type to its price rule, `USAGE` to the items it
bills by use. A rule reads one stack's template (`Stack`) and returns the priced lines (`Item`) of one resource."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

from stacksets import naming
from stacksets.ec2_types import INSTANCE_TYPES
from stacksets.prices import CostError, Price, PriceTable

FARGATE_PROVIDERS = frozenset({"FARGATE", "FARGATE_SPOT"})


@dataclass(frozen=True)
class Item:
    """One priced line: `count` units of `price` in one stack, for `stacks` stacks."""

    stackset: str
    resource: str  # the logical id in the template
    what: str
    count: float
    price: Price
    hours: float  # hours a month for an hourly price, 1 for a monthly one
    stacks: int = 1

    @property
    def monthly(self) -> float:
        return self.count * self.price.price * self.hours * self.stacks

    @property
    def label(self) -> str:
        return f"{self.stackset} {self.resource}: {self.what}"


# --------------------------------------------------------------------------------------------------------------------
# Reading a template


class Stack:
    """One stack's template in one region, with the helpers the rules share."""

    def __init__(self, stackset: str, template: dict, region: str, prices: PriceTable,
                 values: dict[str, str]) -> None:  # fmt: skip
        self.stackset, self.region, self.prices, self.values = stackset, region, prices, values
        self.resources: dict[str, dict] = template.get("Resources") or {}
        self.parameters: dict[str, dict] = template.get("Parameters") or {}
        self.assumptions: list[str] = []

    def props(self, logical_id: str) -> dict:
        return self.resources.get(logical_id, {}).get("Properties") or {}

    def value(self, value: Any) -> Any:
        """A literal, or a parameter's value (what the plan passes, else its default); anything else (an intrinsic
        function, an output only known at deploy time) is None."""
        if isinstance(value, dict) and set(value) == {"Ref"}:
            name = value["Ref"]
            if name in self.values:
                return self.values[name]
            return self.value(self.parameters.get(name, {}).get("Default"))
        return None if isinstance(value, dict) else value

    def number(self, value: Any, default: float | None = None) -> float | None:
        literal = self.value(value)
        try:
            return float(literal) if literal is not None else default
        except (TypeError, ValueError):
            return default

    def of_type(self, resource_type: str) -> dict[str, dict]:
        return {lid: res for lid, res in self.resources.items() if res.get("Type") == resource_type}

    def item(self, resource: str, what: str, count: float, key: str) -> Item:
        price = self.prices.price(self.region, key, f"{naming.template_file(self.stackset)} {resource}")
        return Item(self.stackset, resource, what, count, price, self.prices.hours_per_month if price.hourly else 1)

    def assume(self, text: str) -> None:
        if text not in self.assumptions:
            self.assumptions.append(text)


def _ref(value: Any) -> str | None:
    return value.get("Ref") if isinstance(value, dict) and set(value) == {"Ref"} else None


def _mentions(value: Any, logical_id: str) -> bool:
    """Whether an intrinsic function anywhere inside `value` names `logical_id` (Ref, GetAtt or a Sub mapping)."""
    if isinstance(value, dict):
        if value.get("Ref") == logical_id:
            return True
        att = value.get("Fn::GetAtt")
        if isinstance(att, list) and att and att[0] == logical_id:
            return True
        return any(_mentions(inner, logical_id) for inner in value.values())
    if isinstance(value, list):
        return any(_mentions(inner, logical_id) for inner in value)
    return False


# --------------------------------------------------------------------------------------------------------------------
# The price rules, one per resource type


def _tasks(stack: Stack, service_id: str) -> float:
    """How many tasks a service runs: its DesiredCount, else the minimum of the autoscaling target that names it
    (the floor it never goes below), else ECS's default of 1."""
    props = stack.props(service_id)
    desired = stack.number(props.get("DesiredCount"))
    if desired is not None:
        return desired
    for target_id, target in stack.of_type("AWS::ApplicationAutoScaling::ScalableTarget").items():
        target_props = target.get("Properties") or {}
        if _mentions(target_props.get("ResourceId"), service_id):
            minimum = stack.number(target_props.get("MinCapacity"), 1.0) or 0.0
            stack.assume(f"{stack.stackset} {service_id}: {minimum:g} task(s), the minimum of {target_id}; "
                         "scaling out adds tasks at the same price each")  # fmt: skip
            return minimum
    stack.assume(f"{stack.stackset} {service_id}: no DesiredCount, 1 task (ECS's default)")
    return 1.0


def _task_size(stack: Stack, service_id: str) -> tuple[str, float, float, dict]:
    """(task definition id, CPU units, MiB, task definition properties) of the service's task."""
    task_id = _ref(stack.props(service_id).get("TaskDefinition")) or ""
    task = stack.props(task_id)
    cpu, memory = stack.number(task.get("Cpu")), stack.number(task.get("Memory"))
    if cpu is None or memory is None:
        raise CostError(f"{naming.template_file(stack.stackset)} {service_id}: its task definition {task_id or '?'} "
                        "has no literal task-level Cpu and Memory, which the cost needs")  # fmt: skip
    return task_id, cpu, memory, task


def _runs_on_fargate(stack: Stack, service_id: str, task: dict) -> bool:
    props = stack.props(service_id)
    if props.get("LaunchType"):
        return props["LaunchType"] == "FARGATE"
    strategy = props.get("CapacityProviderStrategy") or []
    if strategy:
        names = {stack.value(entry.get("CapacityProvider")) for entry in strategy}
        if "FARGATE_SPOT" in names:
            stack.assume(f"{stack.stackset} {service_id}: Fargate Spot is priced as on-demand Fargate")
        return bool(names & FARGATE_PROVIDERS)
    return "FARGATE" in (task.get("RequiresCompatibilities") or [])


def _ecs_service(stack: Stack, service_id: str, _props: dict) -> list[Item]:
    """A Fargate service bills its tasks' vCPU and memory by the hour (and a public IPv4 address per task that has
    one); a service on EC2 capacity costs nothing itself: the instances do (see _auto_scaling_group)."""
    _, cpu, memory, task = _task_size(stack, service_id)
    if not _runs_on_fargate(stack, service_id, task):
        return []
    tasks = _tasks(stack, service_id)
    arm = (task.get("RuntimePlatform") or {}).get("CpuArchitecture") == "ARM64"
    arch = "arm" if arm else "x86"
    vcpus, gib = cpu / 1024, memory / 1024
    items = [stack.item(service_id, f"Fargate vCPU, {tasks:g} task(s) x {vcpus:g} vCPU (Linux/{arch})",
                        tasks * vcpus, f"fargate_linux_{arch}_vcpu_hour"),
             stack.item(service_id, f"Fargate memory, {tasks:g} task(s) x {gib:g} GB (Linux/{arch})",
                        tasks * gib, f"fargate_linux_{arch}_gb_hour")]  # fmt: skip
    network = (stack.props(service_id).get("NetworkConfiguration") or {}).get("AwsvpcConfiguration") or {}
    if network.get("AssignPublicIp") == "ENABLED":
        items.append(stack.item(service_id, f"public IPv4 address of each of {tasks:g} task(s)", tasks,
                                "public_ipv4_hour"))  # fmt: skip
    return items


def _ec2_tasks(stack: Stack, group_id: str) -> list[tuple[float, float]]:
    """(CPU, MiB) of every task the services place on the group's capacity providers."""
    providers = {lid for lid, res in stack.of_type("AWS::ECS::CapacityProvider").items()
                 if _ref(((res.get("Properties") or {}).get("AutoScalingGroupProvider") or {})
                         .get("AutoScalingGroupArn")) == group_id}  # fmt: skip
    tasks: list[tuple[float, float]] = []
    for service_id in stack.of_type("AWS::ECS::Service"):
        strategy = stack.props(service_id).get("CapacityProviderStrategy") or []
        if any(_ref(entry.get("CapacityProvider")) in providers for entry in strategy):
            _, cpu, memory, _ = _task_size(stack, service_id)
            tasks += [(cpu, memory)] * int(_tasks(stack, service_id))
    return tasks


def _instances_for(tasks: list[tuple[float, float]], cpu: int, memory: int) -> int:
    """Instances ECS managed scaling (target capacity 100 %) settles on for these tasks: first fit, largest first,
    of what each instance registers for tasks."""
    free: list[list[float]] = []
    for task_cpu, task_memory in sorted(tasks, key=lambda task: (task[1], task[0]), reverse=True):
        for room in free:
            if room[0] >= task_cpu and room[1] >= task_memory:
                room[0] -= task_cpu
                room[1] -= task_memory
                break
        else:
            free.append([cpu - task_cpu, memory - task_memory])
    return len(free)


def _auto_scaling_group(stack: Stack, group_id: str, props: dict) -> list[Item]:
    """EC2 capacity bills per instance-hour, and its root volumes per GB-month. The count is what the group's
    capacity providers need for the tasks placed on them, at least MinSize/DesiredCapacity and at most MaxSize."""
    where = f"{naming.template_file(stack.stackset)} {group_id}"
    template_id = _ref((props.get("LaunchTemplate") or {}).get("LaunchTemplateId")) or ""
    data = stack.props(template_id).get("LaunchTemplateData") or {}
    instance_type = stack.value(data.get("InstanceType"))
    if not isinstance(instance_type, str):
        raise CostError(f"{where}: no literal instance type in its launch template, which the cost needs")
    tasks = _ec2_tasks(stack, group_id)
    floor = max(stack.number(props.get("MinSize"), 0.0) or 0.0, stack.number(props.get("DesiredCapacity"), 0.0) or 0.0)
    ceiling = stack.number(props.get("MaxSize"), math.inf) or 0.0
    count = floor
    if tasks:
        if instance_type not in INSTANCE_TYPES:
            raise CostError(f"{where}: {instance_type} is not in stacksets/ec2_types.py, so the tasks per instance "
                            "are unknown")  # fmt: skip
        kind = INSTANCE_TYPES[instance_type]
        needed = _instances_for(tasks, kind.task_cpu, kind.task_memory)
        count = min(max(floor, needed), ceiling)
        stack.assume(f"{stack.stackset} {group_id}: {count:g} {instance_type} instance(s) for {len(tasks)} task(s) "
                     f"(each instance registers {kind.task_cpu} CPU units and {kind.task_memory} MiB for tasks)"
                     + (f"; {needed} would be needed, MaxSize caps the group at {ceiling:g}" if needed > ceiling
                        else ""))  # fmt: skip
    items = [stack.item(group_id, f"EC2 {instance_type} on-demand (Linux)", count, f"ec2_{instance_type}_hour")]
    for mapping in data.get("BlockDeviceMappings") or []:
        ebs = mapping.get("Ebs") or {}
        size = stack.number(ebs.get("VolumeSize"))
        if size and count:
            volume_type = stack.value(ebs.get("VolumeType")) or "gp2"
            items.append(stack.item(group_id, f"EBS {volume_type} root volume, {count:g} x {size:g} GB",
                                    count * size, f"ebs_{volume_type}_gb_month"))  # fmt: skip
    interfaces = data.get("NetworkInterfaces") or []
    if any(str(stack.value(eni.get("AssociatePublicIpAddress"))).lower() == "true" for eni in interfaces) and count:
        items.append(stack.item(group_id, f"public IPv4 address of each of {count:g} instance(s)", count,
                                "public_ipv4_hour"))  # fmt: skip
    return items


def _nat_gateway(stack: Stack, lid: str, props: dict) -> list[Item]:
    """A public NAT gateway bills per hour; its Elastic IP is an AWS::EC2::EIP of its own."""
    if props.get("ConnectivityType") == "private":
        return [stack.item(lid, "private NAT gateway", 1, "nat_gateway_hour")]
    return [stack.item(lid, "NAT gateway", 1, "nat_gateway_hour")]


def _elastic_ip(stack: Stack, lid: str, _props: dict) -> list[Item]:
    return [stack.item(lid, "Elastic IP (public IPv4 address)", 1, "public_ipv4_hour")]


def _load_balancer(stack: Stack, lid: str, props: dict) -> list[Item]:
    """An ALB bills per hour plus LCU-hours (the assumed minimum is priced, more is usage); an internet-facing one
    holds a public IPv4 address in every subnet (AZ) it is in, dual-stack or not."""
    if (props.get("Type") or "application") != "application":
        raise CostError(f"{naming.template_file(stack.stackset)} {lid}: only application load balancers are priced")
    lcus = stack.prices.assumptions["alb_lcu_per_hour"]
    stack.assume(f"each application load balancer uses {lcus:g} LCU on average (light traffic); more LCUs are "
                 "usage-priced")  # fmt: skip
    items = [stack.item(lid, "application load balancer", 1, "alb_hour"),
             stack.item(lid, f"ALB capacity, {lcus:g} LCU assumed", lcus, "alb_lcu_hour")]
    if props.get("Scheme", "internet-facing") == "internet-facing":
        zones = len(props.get("Subnets") or props.get("SubnetMappings") or [])
        stack.assume("an internet-facing load balancer holds one public IPv4 address per AZ (more while it scales)")
        items.append(stack.item(lid, f"public IPv4 address of the ALB in each of {zones} AZ(s)", zones,
                                "public_ipv4_hour"))  # fmt: skip
    return items


def _vpc_endpoint(stack: Stack, lid: str, props: dict) -> list[Item]:
    """Interface endpoints bill per AZ-hour; gateway endpoints (S3, DynamoDB) are free."""
    if props.get("VpcEndpointType", "Gateway") != "Interface":
        return []
    zones = len(props.get("SubnetIds") or [])
    return [stack.item(lid, f"interface endpoint in {zones} AZ(s)", zones, "vpc_interface_endpoint_az_hour")]


def _web_acl(stack: Stack, lid: str, props: dict) -> list[Item]:
    rules = len(props.get("Rules") or [])
    if any("ManagedRuleGroupStatement" in (rule.get("Statement") or {}) for rule in props.get("Rules") or []):
        stack.assume("an AWS managed rule group costs what a rule does (the baseline groups have no subscription "
                     "fee; Bot Control or Fraud Control would add theirs)")  # fmt: skip
    return [stack.item(lid, "WAF web ACL", 1, "waf_web_acl_month"),
            stack.item(lid, f"WAF rules ({rules})", rules, "waf_rule_month")]


def _scaling_policy(stack: Stack, lid: str, props: dict) -> list[Item]:
    """Target tracking creates and owns CloudWatch alarms (a high and a low one), billed like any other alarm."""
    if props.get("PolicyType") != "TargetTrackingScaling":
        return []
    alarms = stack.prices.assumptions["target_tracking_alarms_per_policy"]
    stack.assume(f"each target-tracking scaling policy owns {alarms:g} CloudWatch alarms")
    return [stack.item(lid, f"target-tracking alarms ({alarms:g})", alarms,
                       "cloudwatch_alarm_month")]  # fmt: skip


def _transfer_server(stack: Stack, lid: str, props: dict) -> list[Item]:
    """Transfer Family bills every protocol enabled on a server, per hour, whether it is online or not."""
    protocols = props.get("Protocols") or ["SFTP"]
    return [stack.item(lid, f"Transfer Family endpoint ({', '.join(map(str, protocols))})", len(protocols),
                       "transfer_protocol_hour")]  # fmt: skip


def _kms_key(stack: Stack, lid: str, props: dict) -> list[Item]:
    if str(stack.value(props.get("EnableKeyRotation"))).lower() == "true":
        stack.assume("a KMS key with automatic rotation adds $1 a month after each of its first two yearly rotations "
                     "(not in the total)")  # fmt: skip
    return [stack.item(lid, "KMS key", 1, "kms_key_month")]


def _alarm(stack: Stack, lid: str, props: dict) -> list[Item]:
    """CloudWatch bills an alarm per metric it reads: a metric-math alarm pays for each metric of its expression."""
    metrics = sum(1 for query in props.get("Metrics") or [] if "MetricStat" in query) or 1
    if metrics > 1:
        stack.assume("a metric-math alarm is billed once per metric its expression reads")
    return [stack.item(lid, f"CloudWatch alarm ({metrics} metric{'s' if metrics > 1 else ''})", metrics,
                       "cloudwatch_alarm_month")]  # fmt: skip


def _monthly(what: str, key: str) -> Callable[[Stack, str, dict], list[Item]]:
    return lambda stack, lid, _props: [stack.item(lid, what, 1, key)]


# The one place where a resource type maps to its price rule. Types not named here cost nothing while they exist
# (IAM, security groups, subnets, ECS clusters, task definitions, certificates, record sets, ...) or bill by use only.
RULES: dict[str, Callable[[Stack, str, dict], list[Item]]] = {
    "AWS::ECS::Service": _ecs_service,
    "AWS::AutoScaling::AutoScalingGroup": _auto_scaling_group,
    "AWS::EC2::NatGateway": _nat_gateway,
    "AWS::EC2::EIP": _elastic_ip,
    "AWS::ElasticLoadBalancingV2::LoadBalancer": _load_balancer,
    "AWS::EC2::VPCEndpoint": _vpc_endpoint,
    "AWS::WAFv2::WebACL": _web_acl,
    "AWS::ApplicationAutoScaling::ScalingPolicy": _scaling_policy,
    "AWS::Transfer::Server": _transfer_server,
    "AWS::KMS::Key": _kms_key,
    "AWS::SecretsManager::Secret": _monthly("Secrets Manager secret", "secret_month"),
    "AWS::Route53::HostedZone": _monthly("Route 53 hosted zone", "hosted_zone_month"),
    "AWS::CloudWatch::Alarm": _alarm,
}

# What each resource type bills by use: listed apart with its unit price, never in a total.
USAGE: dict[str, tuple[str, ...]] = {
    "AWS::EC2::NatGateway": ("nat_processing_gb", "data_transfer_out_gb", "cross_az_transfer_gb"),
    "AWS::ElasticLoadBalancingV2::LoadBalancer": ("alb_lcu_hour", "data_transfer_out_gb"),
    "AWS::WAFv2::WebACL": ("waf_requests_million",),
    "AWS::EFS::FileSystem": ("efs_standard_gb_month",),
    "AWS::S3::Bucket": ("s3_standard_gb_month",),
    "AWS::Athena::WorkGroup": ("athena_tb_scanned",),
    "AWS::DataSync::Task": ("datasync_gb",),
    "AWS::Transfer::Server": ("transfer_gb",),
    "AWS::Logs::LogGroup": ("logs_ingestion_gb", "logs_storage_gb_month"),
    "AWS::EC2::FlowLog": ("logs_ingestion_gb",),
    "AWS::ECR::Repository": ("ecr_storage_gb_month",),
    "AWS::CodeBuild::Project": ("codebuild_large_minute",),
    "AWS::Lambda::Function": ("lambda_requests_million",),
    "AWS::SQS::Queue": ("sqs_requests_million",),
    "AWS::KMS::Key": ("kms_requests_10k",),
}
