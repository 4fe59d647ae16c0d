"""What the committed templates cost a month, before usage: `deploy.py cost` and the monthly delta in `plan`. Pure:
it reads template text and the dated price table `stacksets/prices.json`, never AWS.

Only resources that bill by the hour or the month while they exist are priced (Fargate tasks, EC2 capacity, NAT
gateways, load balancers, public IPv4 addresses, keys, secrets, zones, web ACLs, alarms, SFTP endpoints, ...); what
bills by use (data transfer, NAT processing, storage, Athena scans, DataSync copies) is listed apart with its unit
price, because no template says how much of it there will be. `RULES` is the one place where a resource type maps to
its price rule, `USAGE` the one place where it maps to its usage-priced items.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterable

from cfn_tools import load_yaml

from stacksets import naming
from stacksets.ec2_types import INSTANCE_TYPES
from stacksets.errors import UserError

COMMITTED_PRICES = Path(__file__).with_name("prices.json")
PRICES = COMMITTED_PRICES  # what the commands read
FARGATE_PROVIDERS = frozenset({"FARGATE", "FARGATE_SPOT"})


class CostError(UserError):
    """A template needs a price the table does not have (a Region, an instance type); worded for the user."""


@dataclass(frozen=True)
class Price:
    key: str
    price: float
    unit: str
    source: str
    status: str  # "confirmed": read on the AWS page named in source; "unconfirmed": the best public figure

    @property
    def hourly(self) -> bool:
        return self.key.endswith("_hour")


@dataclass(frozen=True)
class PriceTable:
    date: str
    currency: str
    hours_per_month: float
    assumptions: dict[str, float]
    fixed: dict[str, dict[str, Price]]  # region -> key -> price
    usage: dict[str, dict[str, Price]]
    path: str = "stacksets/prices.json"

    def price(self, region: str, key: str, where: str) -> Price:
        if region not in self.fixed:
            raise CostError(f"{self.path} has no prices for {region} (needed by {where}); the table covers "
                            f"{', '.join(sorted(self.fixed))}: add the Region's block from the AWS pricing pages, "
                            "with the date and the source of every figure")  # fmt: skip
        try:
            return self.fixed[region][key]
        except KeyError:
            raise CostError(f"{self.path} has no {region} price '{key}' (needed by {where}): add it from the AWS "
                            "pricing page, with its source and whether you confirmed it there") from None


def load_prices(path: Path | None = None) -> PriceTable:
    path = path or PRICES
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise CostError(f"{path}: cannot read the price table ({error})") from None

    def prices(section: str) -> dict[str, dict[str, Price]]:
        return {region: {key: Price(key, float(entry["price"]), entry["unit"], entry["source"], entry["status"])
                         for key, entry in block.get(section, {}).items()}
                for region, block in data["regions"].items()}  # fmt: skip

    shown = "stacksets/prices.json" if path == COMMITTED_PRICES else str(path)
    return PriceTable(data["date"], data["currency"], float(data["hours_per_month"]),
                      {key: float(value) for key, value in data["assumptions"].items()},
                      prices("fixed"), prices("usage"), shown)  # fmt: skip


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


@dataclass(frozen=True)
class StackCost:
    """The fixed monthly cost of one StackSet: its items (already times its stacks), the assumptions they rest on,
    and the usage-priced items its resources bring."""

    stackset: str
    stacks: int
    items: tuple[Item, ...]
    assumptions: tuple[str, ...]
    usage: tuple[tuple[str, Price], ...]  # (region, price)

    @property
    def monthly(self) -> float:
        return sum(item.monthly for item in self.items)


# --------------------------------------------------------------------------------------------------------------------
# Reading a template


class _Stack:
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


def _tasks(stack: _Stack, service_id: str) -> float:
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


def _task_size(stack: _Stack, service_id: str) -> tuple[str, float, float, dict]:
    """(task definition id, CPU units, MiB, task definition properties) of the service's task."""
    task_id = _ref(stack.props(service_id).get("TaskDefinition")) or ""
    task = stack.props(task_id)
    cpu, memory = stack.number(task.get("Cpu")), stack.number(task.get("Memory"))
    if cpu is None or memory is None:
        raise CostError(f"{naming.template_file(stack.stackset)} {service_id}: its task definition {task_id or '?'} "
                        "has no literal task-level Cpu and Memory, which the cost needs")  # fmt: skip
    return task_id, cpu, memory, task


def _runs_on_fargate(stack: _Stack, service_id: str, task: dict) -> bool:
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


def _ecs_service(stack: _Stack, service_id: str, _props: dict) -> list[Item]:
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


def _ec2_tasks(stack: _Stack, group_id: str) -> list[tuple[float, float]]:
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


def _auto_scaling_group(stack: _Stack, group_id: str, props: dict) -> list[Item]:
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


def _nat_gateway(stack: _Stack, lid: str, props: dict) -> list[Item]:
    """A public NAT gateway bills per hour; its Elastic IP is an AWS::EC2::EIP of its own."""
    if props.get("ConnectivityType") == "private":
        return [stack.item(lid, "private NAT gateway", 1, "nat_gateway_hour")]
    return [stack.item(lid, "NAT gateway", 1, "nat_gateway_hour")]


def _elastic_ip(stack: _Stack, lid: str, _props: dict) -> list[Item]:
    return [stack.item(lid, "Elastic IP (public IPv4 address)", 1, "public_ipv4_hour")]


def _load_balancer(stack: _Stack, lid: str, props: dict) -> list[Item]:
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


def _vpc_endpoint(stack: _Stack, lid: str, props: dict) -> list[Item]:
    """Interface endpoints bill per AZ-hour; gateway endpoints (S3, DynamoDB) are free."""
    if props.get("VpcEndpointType", "Gateway") != "Interface":
        return []
    zones = len(props.get("SubnetIds") or [])
    return [stack.item(lid, f"interface endpoint in {zones} AZ(s)", zones, "vpc_interface_endpoint_az_hour")]


def _web_acl(stack: _Stack, lid: str, props: dict) -> list[Item]:
    rules = len(props.get("Rules") or [])
    if any("ManagedRuleGroupStatement" in (rule.get("Statement") or {}) for rule in props.get("Rules") or []):
        stack.assume("an AWS managed rule group costs what a rule does (the baseline groups have no subscription "
                     "fee; Bot Control or Fraud Control would add theirs)")  # fmt: skip
    return [stack.item(lid, "WAF web ACL", 1, "waf_web_acl_month"),
            stack.item(lid, f"WAF rules ({rules})", rules, "waf_rule_month")]


def _scaling_policy(stack: _Stack, lid: str, props: dict) -> list[Item]:
    """Target tracking creates and owns CloudWatch alarms (a high and a low one), billed like any other alarm."""
    if props.get("PolicyType") != "TargetTrackingScaling":
        return []
    alarms = stack.prices.assumptions["target_tracking_alarms_per_policy"]
    stack.assume(f"each target-tracking scaling policy owns {alarms:g} CloudWatch alarms")
    return [stack.item(lid, f"target-tracking alarms ({alarms:g})", alarms,
                       "cloudwatch_alarm_month")]  # fmt: skip


def _transfer_server(stack: _Stack, lid: str, props: dict) -> list[Item]:
    """Transfer Family bills every protocol enabled on a server, per hour, whether it is online or not."""
    protocols = props.get("Protocols") or ["SFTP"]
    return [stack.item(lid, f"Transfer Family endpoint ({', '.join(map(str, protocols))})", len(protocols),
                       "transfer_protocol_hour")]  # fmt: skip


def _kms_key(stack: _Stack, lid: str, props: dict) -> list[Item]:
    if str(stack.value(props.get("EnableKeyRotation"))).lower() == "true":
        stack.assume("a KMS key with automatic rotation adds $1 a month after each of its first two yearly rotations "
                     "(not in the total)")  # fmt: skip
    return [stack.item(lid, "KMS key", 1, "kms_key_month")]


def _alarm(stack: _Stack, lid: str, props: dict) -> list[Item]:
    """CloudWatch bills an alarm per metric it reads: a metric-math alarm pays for each metric of its expression."""
    metrics = sum(1 for query in props.get("Metrics") or [] if "MetricStat" in query) or 1
    if metrics > 1:
        stack.assume("a metric-math alarm is billed once per metric its expression reads")
    return [stack.item(lid, f"CloudWatch alarm ({metrics} metric{'s' if metrics > 1 else ''})", metrics,
                       "cloudwatch_alarm_month")]  # fmt: skip


def _monthly(what: str, key: str) -> Callable[[_Stack, str, dict], list[Item]]:
    return lambda stack, lid, _props: [stack.item(lid, what, 1, key)]


# The one place where a resource type maps to its price rule. Types not named here cost nothing while they exist
# (IAM, security groups, subnets, ECS clusters, task definitions, certificates, record sets, ...) or bill by use only.
RULES: dict[str, Callable[[_Stack, str, dict], list[Item]]] = {
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


# --------------------------------------------------------------------------------------------------------------------
# Costing StackSets


@lru_cache(maxsize=128)
def _parsed(body: str) -> dict:
    template = load_yaml(body)
    return template if isinstance(template, dict) else {}


def stack_cost(stackset: str, body: str, stacks_by_region: dict[str, int], prices: PriceTable,
               parameters: dict[str, str] | None = None) -> StackCost:  # fmt: skip
    """One StackSet's template priced in each region it has stacks in, times those stacks; `parameters` are the
    values the plan passes (the deploy's own), over the template's defaults."""
    items: list[Item] = []
    assumptions: list[str] = []
    usage: dict[tuple[str, str], Price] = {}
    template = _parsed(body)
    for region, stacks in sorted(stacks_by_region.items()):
        stack = _Stack(stackset, template, region, prices, parameters or {})
        for lid, resource in sorted(stack.resources.items()):
            kind = resource.get("Type", "")
            rule = RULES.get(kind)
            if rule is not None:
                if resource.get("Condition"):
                    stack.assume(f"{stackset} {lid}: created only under condition {resource['Condition']}; "
                                 "counted as created")  # fmt: skip
                items += [replace(item, stacks=stacks) for item in rule(stack, lid, resource.get("Properties") or {})
                          if item.count]  # fmt: skip
            for key in USAGE.get(kind, ()):
                if key in prices.usage.get(region, {}):
                    usage[(region, key)] = prices.usage[region][key]
        assumptions += [text for text in stack.assumptions if text not in assumptions]
    return StackCost(stackset, sum(stacks_by_region.values()), tuple(items), tuple(assumptions),
                     tuple((region, price) for (region, _), price in sorted(usage.items())))  # fmt: skip


def _stacks_by_region(node: Any) -> tuple[dict[str, int], str]:
    """How many stacks a StackSet has per region, from its targets; OU-only targets (the service-managed bootstrap)
    are not known offline: one stack per region is priced, and the note says so."""
    pairs = node.targets.explicit_pairs()
    if pairs:
        return dict(Counter(region for _, region in pairs)), ""
    return {region: 1 for region in node.targets.regions}, "per account of its OUs"


@dataclass(frozen=True)
class Group:
    """An instance (its five StackSets) or one shared StackSet."""

    name: str
    kind: str  # "instance" or "shared"
    where: str
    stacksets: tuple[StackCost, ...]
    note: str = ""

    @property
    def monthly(self) -> float:
        return sum(cost.monthly for cost in self.stacksets)


@dataclass(frozen=True)
class CostReport:
    prices: PriceTable
    groups: tuple[Group, ...]

    @property
    def monthly(self) -> float:
        return sum(group.monthly for group in self.groups)

    def assumptions(self) -> list[str]:
        found: list[str] = []
        for group in self.groups:
            for cost in group.stacksets:
                found += [text for text in cost.assumptions if text not in found]
        return found

    def usage(self) -> list[tuple[str, Price]]:
        return sorted({entry for group in self.groups for cost in group.stacksets for entry in cost.usage},
                      key=lambda entry: (entry[0], entry[1].key))  # fmt: skip

    def unconfirmed(self) -> list[Price]:
        keys = {item.price for group in self.groups for cost in group.stacksets for item in cost.items}
        keys |= {price for _, price in self.usage()}
        return sorted((price for price in keys if price.status != "confirmed"), key=lambda price: price.key)


def literal_parameters(node: Any) -> dict[str, str]:
    """The parameter values the plan knows before the deploy (not those read from other StackSets' outputs)."""
    return {key: value for key, value in node.parameters if isinstance(value, str)}


def instance_stacksets(instance: str) -> tuple[str, ...]:
    return (naming.instance_stackset(instance), naming.storage_stackset(instance),
            naming.instance_data_stackset(instance), naming.zone_stackset(instance),
            naming.delegation_stackset(instance))  # fmt: skip


def plan_cost(plan: Any, cfg: Any, prices: PriceTable | None = None) -> CostReport:
    """The fixed monthly cost of every StackSet of the plan as committed: per instance (its five StackSets), then
    every shared StackSet, each times the stacks its targets give it."""
    prices = prices or load_prices()
    costs, notes = {}, {}
    for name, node in plan.nodes.items():
        by_region, notes[name] = _stacks_by_region(node)
        costs[name] = stack_cost(name, node.template_body, by_region, prices, literal_parameters(node))
    groups, grouped = [], set()
    for instance in sorted(cfg.instances):
        members = [costs[name] for name in instance_stacksets(instance) if name in costs]
        grouped |= {cost.stackset for cost in members}
        if members:
            where = f"{cfg.instances[instance].account}, {cfg.region_of(instance)}"
            groups.append(Group(instance, "instance", where, tuple(members)))
    for name in sorted(set(costs) - grouped):
        node = plan.nodes[name]
        where = ", ".join(node.targets.regions)
        groups.append(Group(name, "shared", where, (costs[name],), notes[name]))
    return CostReport(prices, tuple(groups))


# --------------------------------------------------------------------------------------------------------------------
# The delta of a plan: the committed templates against the deployed ones


@dataclass(frozen=True)
class Change:
    label: str
    monthly: float


@dataclass(frozen=True)
class StackSetDelta:
    stackset: str
    before: float
    after: float
    changes: tuple[Change, ...]  # per item, largest first

    @property
    def monthly(self) -> float:
        return self.after - self.before


def _by_line(items: Iterable[Item]) -> dict[tuple[str, str], tuple[str, float]]:
    """Monthly cost per (resource, price), with the words of its line: what the delta compares."""
    totals: dict[tuple[str, str], tuple[str, float]] = {}
    for item in items:
        key = (item.resource, item.price.key)
        totals[key] = (f"{item.resource}: {item.what}", totals.get(key, ("", 0.0))[1] + item.monthly)
    return totals


def stackset_delta(name: str, planned_body: str, planned_pairs: Iterable[tuple[str, str]], live_body: str | None,
                   live_pairs: Iterable[tuple[str, str]], prices: PriceTable,
                   parameters: dict[str, str] | None = None) -> StackSetDelta:  # fmt: skip
    """What the StackSet costs after the deploy (the committed template on the stacks it will have) minus what it
    costs now (the deployed template on the stacks it has; nothing when there is no StackSet or template yet)."""
    after = stack_cost(name, planned_body, dict(Counter(region for _, region in planned_pairs)), prices, parameters)
    live = list(live_pairs)
    before_items: tuple[Item, ...] = ()
    if live_body and live:
        before_items = stack_cost(name, live_body, dict(Counter(region for _, region in live)), prices,
                                  parameters).items  # fmt: skip
    old, new = _by_line(before_items), _by_line(after.items)
    changes = [Change((new.get(key) or old[key])[0], new.get(key, ("", 0.0))[1] - old.get(key, ("", 0.0))[1])
               for key in sorted(set(old) | set(new))]
    changes = sorted((change for change in changes if round(change.monthly, 2)),
                     key=lambda change: (-abs(change.monthly), change.label))  # fmt: skip
    return StackSetDelta(name, sum(item.monthly for item in before_items), after.monthly, tuple(changes))


def plan_delta(plan: Any, diffs: Iterable[Any], prices: PriceTable | None = None) -> list[StackSetDelta]:
    """Per StackSet of the diff whose monthly cost changes: the committed templates against the deployed ones."""
    prices = prices or load_prices()
    deltas = []
    for diff in diffs:
        node = plan.nodes.get(getattr(diff, "stackset", None))
        if node is None:
            continue
        live = tuple(getattr(diff, "live_pairs", ()))
        planned = (set(live) - set(diff.delete)) | set(diff.create)
        delta = stackset_delta(node.name, node.template_body, sorted(planned), getattr(diff, "live_template", None),
                               live, prices, literal_parameters(node))  # fmt: skip
        if round(delta.monthly, 2):
            deltas.append(delta)
    return deltas
