"""ECS tasks and their network interfaces, as `deploy.py connect` reads them through the reader role.

There are no task objects of their own: every live AWS::ECS::Service of a stack runs its desired count of tasks
(DesiredCount, or 1 when the template leaves it to a scalable target, raised to that target's MinCapacity), each
with one ENI in the service's subnets, round robin. Ids and addresses derive from the stack, the service and the
task's number, so one world always answers the same.

Rules (docs/aws_model.md):
- `ecs-list-tasks`: ListTasks of a cluster that does not exist in the caller's account and Region (the default
  cluster when none is named) fails ClusterNotFoundException; desiredStatus defaults to RUNNING, and STOPPED or
  PENDING list nothing (no task of the model ever stops); maxResults 1-100, at most 100 a page with nextToken;
  startedBy must be the only filter. Source: botocore ecs ListTasks.
- `ecs-describe-tasks`: DescribeTasks takes 1-100 task ids or ARNs of one cluster; the others come back as failures
  with reason MISSING. Source: botocore ecs DescribeTasks ("A list of up to 100 task IDs or full ARN entries").
- `ec2-network-interfaces`: DescribeNetworkInterfaces of an ENI id that does not exist fails
  InvalidNetworkInterfaceID.NotFound; MaxResults (5-1000) cannot go with NetworkInterfaceIds. A task's ENI has a
  public IPv4 address (Association.PublicIp) only when its service says AssignPublicIp ENABLED. Source: botocore ec2
  DescribeNetworkInterfaces; ECS developer guide, Fargate task networking.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from stacksets.awsmodel.adapter import ModelError
from stacksets.awsmodel.resources import digest
from stacksets.awsmodel.services import partition
from stacksets.awsmodel.stacksets import timestamp

if TYPE_CHECKING:
    from stacksets.awsmodel.engine import Resource, Stack
    from stacksets.awsmodel.model import Caller, World

MAX_TASKS = 100  # DescribeTasks.tasks: "up to 100"; ListTasks.maxResults: "between 1 and 100"
ENI_RESULTS = (5, 1000)  # DescribeNetworkInterfaces.MaxResults
# Public addresses come from TEST-NET-1 (RFC 5737), so a rehearsal's address is never mistaken for a real one.
PUBLIC_POOL = ipaddress.IPv4Network("192.0.2.0/24")
# The first four addresses and the last of every subnet are AWS's (VPC user guide, "Subnet CIDR blocks").
RESERVED_LOW = 4


@dataclass(frozen=True)
class Task:
    arn: str
    cluster_arn: str
    cluster: str
    service: str
    family: str
    definition_arn: str
    containers: tuple[str, ...]
    launch_type: str
    eni: str
    subnet: str
    vpc: str
    zone: str
    private_ip: str
    public_ip: str | None
    groups: tuple[str, ...]
    started: float


class Ecs:
    def __init__(self, world: World) -> None:
        self.world = world

    # --- the tasks the services run --------------------------------------------------------------------------------

    def _live(self, caller: Caller) -> list[tuple[Stack, Resource]]:
        return [(stack, resource) for stack in list(self.world.engine.registry.stacks.values())
                if (stack.account, stack.region) == (caller.account, caller.region)
                for resource in stack.resources.values()]  # fmt: skip

    def _cluster(self, caller: Caller, name_or_arn: str | None) -> tuple[str, str]:
        """(name, ARN) of a live cluster of the caller's account and Region."""
        name = (name_or_arn or "default").rsplit("/", 1)[-1]
        for _, resource in self._live(caller):
            if resource.resource_type == "AWS::ECS::Cluster" and resource.physical_id == name:
                return name, str(resource.attributes.get("Arn"))
        raise ModelError("ClusterNotFoundException", "Cluster not found.")

    def tasks(self, caller: Caller) -> list[Task]:
        live = self._live(caller)
        by_id = {r.physical_id: r for _, r in live}
        clusters = {r.physical_id: str(r.attributes.get("Arn")) for _, r in live
                    if r.resource_type == "AWS::ECS::Cluster"}  # fmt: skip
        minimum = {str(r.properties.get("ResourceId", "")): int(r.properties.get("MinCapacity", 0)) for _, r in live
                   if r.resource_type == "AWS::ApplicationAutoScaling::ScalableTarget"}  # fmt: skip
        found = []
        for stack, service in live:
            if service.resource_type != "AWS::ECS::Service":
                continue
            props = service.properties
            cluster = str(props.get("Cluster", "default")).rsplit("/", 1)[-1]
            name = str(service.attributes.get("Name"))
            # CloudFormation AWS::ECS::Service DesiredCount: 1 for a new service that names none
            count = int(props.get("DesiredCount", 1))
            if "DesiredCount" not in props:
                count = max(count, minimum.get(f"service/{cluster}/{name}", 0))
            definition = by_id.get(str(props.get("TaskDefinition")))
            if cluster not in clusters or definition is None:
                continue
            network = (props.get("NetworkConfiguration") or {}).get("AwsvpcConfiguration") or {}
            subnets = [str(s) for s in network.get("Subnets", [])]
            for number in range(count):
                found.append(self._task(stack, service, definition, cluster, clusters[cluster], network,
                                        subnets, by_id, number))  # fmt: skip
        return found

    def _task(self, stack: Stack, service: Resource, definition: Resource, cluster: str, cluster_arn: str,
              network: dict[str, Any], subnets: list[str], by_id: dict[str, Resource],
              number: int) -> Task:  # fmt: skip
        h = digest(stack.stack_id, service.logical_id, str(number))
        subnet_id = subnets[number % len(subnets)] if subnets else ""
        subnet = by_id.get(subnet_id)
        block = ipaddress.IPv4Network(str((subnet.properties if subnet else {}).get("CidrBlock", "10.0.0.0/24")))
        hosts = block.num_addresses - RESERVED_LOW - 1
        private = str(block.network_address + RESERVED_LOW + int(h[:8], 16) % hosts)
        public = None
        if network.get("AssignPublicIp") == "ENABLED":
            public = str(PUBLIC_POOL.network_address + 1 + int(h[8:12], 16) % (PUBLIC_POOL.num_addresses - 2))
        containers = tuple(str(c.get("Name")) for c in definition.properties.get("ContainerDefinitions", []))
        family = str(definition.properties.get("Family") or definition.physical_id.rsplit("/", 1)[-1].split(":")[0])
        props = service.properties
        launch = str(props.get("LaunchType") or ("EC2" if props.get("CapacityProviderStrategy") else "FARGATE"))
        return Task(
            arn=f"arn:{partition(stack.region)}:ecs:{stack.region}:{stack.account}:task/{cluster}/{h[:32]}",
            cluster_arn=cluster_arn, cluster=cluster, service=str(service.attributes.get("Name")), family=family,
            definition_arn=definition.physical_id, containers=containers, launch_type=launch,
            eni=f"eni-{h[32:49]}", subnet=subnet_id, vpc=str((subnet.attributes if subnet else {}).get("VpcId", "")),
            zone=str((subnet.attributes if subnet else {}).get("AvailabilityZone", f"{stack.region}a")),
            private_ip=private, public_ip=public, groups=tuple(str(g) for g in network.get("SecurityGroups", [])),
            started=stack.last_updated_time or stack.creation_time,
        )  # fmt: skip

    # --- ECS -------------------------------------------------------------------------------------------------------

    def list_tasks(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        if "startedBy" in params and set(params) & {"family", "serviceName", "containerInstance", "launchType",
                                                     "desiredStatus"}:  # fmt: skip
            raise ModelError("InvalidParameterException", "startedBy must be the only filter when it is given")
        limit = int(params.get("maxResults", MAX_TASKS))
        if not 1 <= limit <= MAX_TASKS:
            raise ModelError("InvalidParameterException", f"maxResults must be between 1 and {MAX_TASKS}")
        name, _ = self._cluster(caller, params.get("cluster"))
        tasks = [t for t in self.tasks(caller) if t.cluster == name]
        if "serviceName" in params:
            service = str(params["serviceName"]).rsplit("/", 1)[-1]
            if not any(t.service == service for t in tasks) and not self._service_exists(caller, name, service):
                raise ModelError("ServiceNotFoundException", "Service not found.")
            tasks = [t for t in tasks if t.service == service]
        if "family" in params:
            tasks = [t for t in tasks if t.family == params["family"]]
        if "launchType" in params:
            tasks = [t for t in tasks if t.launch_type == params["launchType"]]
        if "startedBy" in params or "containerInstance" in params:
            tasks = []  # services start their tasks as ecs-svc/..., and the model has no container instances
        if params.get("desiredStatus", "RUNNING") != "RUNNING":
            tasks = []
        arns = sorted(t.arn for t in tasks)
        start = int(params.get("nextToken") or 0)
        answer: dict[str, Any] = {"taskArns": arns[start : start + limit]}
        if start + limit < len(arns):
            answer["nextToken"] = str(start + limit)
        return answer

    def _service_exists(self, caller: Caller, cluster: str, service: str) -> bool:
        return any(r.resource_type == "AWS::ECS::Service" and str(r.attributes.get("Name")) == service and
                   str(r.properties.get("Cluster", "")).rsplit("/", 1)[-1] == cluster
                   for _, r in self._live(caller))  # fmt: skip

    def describe_tasks(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        wanted = list(params.get("tasks", []))
        if not 1 <= len(wanted) <= MAX_TASKS:
            raise ModelError("InvalidParameterException", f"tasks must name between 1 and {MAX_TASKS} tasks")
        name, _ = self._cluster(caller, params.get("cluster"))
        by_id = {t.arn.rsplit("/", 1)[-1]: t for t in self.tasks(caller) if t.cluster == name}
        answer: dict[str, Any] = {"tasks": [], "failures": []}
        for wanted_task in wanted:
            task = by_id.get(str(wanted_task).rsplit("/", 1)[-1])
            if task is None or (wanted_task.startswith("arn:") and wanted_task != task.arn):
                answer["failures"].append({"arn": wanted_task, "reason": "MISSING"})
                continue
            answer["tasks"].append(self._describe(caller, task))
        return answer

    def _describe(self, caller: Caller, task: Task) -> dict[str, Any]:
        h = digest(task.arn, "attachment")
        attachment = f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"
        mac = ":".join(h[i : i + 2] for i in range(32, 44, 2))
        details = [("subnetId", task.subnet), ("networkInterfaceId", task.eni), ("macAddress", mac),
                   ("privateDnsName", _private_dns(task.private_ip, caller.region)),
                   ("privateIPv4Address", task.private_ip)]  # fmt: skip
        return {
            "taskArn": task.arn, "clusterArn": task.cluster_arn, "taskDefinitionArn": task.definition_arn,
            "group": f"service:{task.service}", "startedBy": f"ecs-svc/{h[44:63]}", "launchType": task.launch_type,
            "lastStatus": "RUNNING", "desiredStatus": "RUNNING", "availabilityZone": task.zone,
            "enableExecuteCommand": True, "createdAt": timestamp(task.started), "startedAt": timestamp(task.started),
            "attachments": [{"id": attachment, "type": "ElasticNetworkInterface", "status": "ATTACHED",
                             "details": [{"name": k, "value": v} for k, v in details]}],
            "containers": [{"containerArn": f"{task.arn.replace(':task/', ':container/')}/{name}", "name": name,
                            "taskArn": task.arn, "lastStatus": "RUNNING",
                            "networkInterfaces": [{"attachmentId": attachment,
                                                   "privateIpv4Address": task.private_ip}]}
                           for name in task.containers],
        }  # fmt: skip

    # --- EC2 -------------------------------------------------------------------------------------------------------

    def describe_network_interfaces(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        ids = params.get("NetworkInterfaceIds")
        if ids and "MaxResults" in params:
            raise ModelError("InvalidParameterCombination", "The parameter NetworkInterfaceIds cannot be used with "
                             "the parameter MaxResults")  # fmt: skip
        limit = int(params.get("MaxResults", ENI_RESULTS[1]))
        if not ENI_RESULTS[0] <= limit <= ENI_RESULTS[1]:
            raise ModelError("InvalidParameterValue", f"MaxResults must be between {ENI_RESULTS[0]} and "
                             f"{ENI_RESULTS[1]}")  # fmt: skip
        if params.get("Filters"):
            raise ModelError("ModelGap", "the model answers DescribeNetworkInterfaces without Filters only")
        enis = {t.eni: t for t in self.tasks(caller)}
        if ids:
            missing = [i for i in ids if i not in enis]
            if missing:
                raise ModelError("InvalidNetworkInterfaceID.NotFound",
                                 f"The networkInterface ID '{missing[0]}' does not exist")  # fmt: skip
            rows = [enis[i] for i in ids]
        else:
            rows = [enis[i] for i in sorted(enis)]
        start = int(params.get("NextToken") or 0)
        answer: dict[str, Any] = {"NetworkInterfaces": [self._eni(caller, t) for t in rows[start : start + limit]]}
        if not ids and start + limit < len(rows):
            answer["NextToken"] = str(start + limit)
        return answer

    def _eni(self, caller: Caller, task: Task) -> dict[str, Any]:
        private = {"Primary": True, "PrivateIpAddress": task.private_ip,
                   "PrivateDnsName": _private_dns(task.private_ip, caller.region)}  # fmt: skip
        row: dict[str, Any] = {
            "NetworkInterfaceId": task.eni, "SubnetId": task.subnet, "VpcId": task.vpc,
            "AvailabilityZone": task.zone, "OwnerId": caller.account, "RequesterManaged": True,
            "Status": "in-use", "InterfaceType": "interface", "PrivateIpAddress": task.private_ip,
            "Description": f"arn:{partition(caller.region)}:ecs:{caller.region}:{caller.account}:attachment/"
                           f"{task.arn.rsplit('/', 1)[-1]}",
            "Groups": [{"GroupId": g} for g in task.groups], "PrivateIpAddresses": [private],
        }  # fmt: skip
        if task.public_ip is not None:
            association = {"IpOwnerId": "amazon", "PublicIp": task.public_ip,
                           "PublicDnsName": f"ec2-{task.public_ip.replace('.', '-')}.{caller.region}.compute."
                                            "amazonaws.com"}  # fmt: skip
            row["Association"] = association
            private["Association"] = association
        return row


def _private_dns(address: str, region: str) -> str:
    return f"ip-{address.replace('.', '-')}.{region}.compute.internal"
