"""EC2 Auto Scaling: the groups the stacks created and the instances ECS services put into them, as a custom
resource's function sees them (the orchestrator itself never calls Auto Scaling).

Rules (docs/aws_model.md):
- `asg-protection` (engine_rules.py): instances launch with the services that run on the group's capacity provider
  and are protected from scale-in; deleting a group with a protected instance fails.
- `asg-api`: DescribeAutoScalingGroups lists the caller's groups (all, or the names asked for; unknown names are left
  out), at most MaxRecords (default 50, at most 100) a page, with their instances unless IncludeInstances is false.
  SetInstanceProtection takes at most 50 instance ids (LimitExceeded), of an existing group (ValidationError), each
  one an instance of that group (ValidationError). Sources: botocore autoscaling SetInstanceProtection and
  DescribeAutoScalingGroups.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stacksets.awsmodel.adapter import ModelError
from stacksets.awsmodel.engine_rules import GROUP, GroupInstance, group_key
from stacksets.awsmodel.resources import digest
from stacksets.awsmodel.stacksets import timestamp

if TYPE_CHECKING:
    from stacksets.awsmodel.engine import Resource, Stack
    from stacksets.awsmodel.model import Caller, World

PROTECTION_BATCH = 50  # SetInstanceProtection: "You can specify up to 50 instances."
DEFAULT_RECORDS, MAX_RECORDS = 50, 100  # DescribeAutoScalingGroups.MaxRecords


class AutoScaling:
    def __init__(self, world: World) -> None:
        self.world = world

    def _groups(self, caller: Caller) -> list[tuple[Stack | None, Resource]]:
        registry = self.world.engine.registry
        return [(registry.stacks.get(owner), resource) for owner, resource in
                registry.resources(caller.account, caller.region) if resource.resource_type == GROUP]  # fmt: skip

    def _instances(self, caller: Caller, name: str) -> list[GroupInstance]:
        return self.world.engine.registry.instances.get(group_key(caller.account, caller.region, name), [])

    def describe_auto_scaling_groups(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        records = int(params.get("MaxRecords", DEFAULT_RECORDS))
        if not 1 <= records <= MAX_RECORDS:
            raise ModelError("ValidationError", f"MaxRecords must be between 1 and {MAX_RECORDS}")
        wanted = params.get("AutoScalingGroupNames")
        groups = sorted(((stack, group) for stack, group in self._groups(caller)
                         if wanted is None or group.physical_id in wanted), key=lambda pair: pair[1].physical_id)
        start = int(params.get("NextToken") or 0)
        page = groups[start : start + records]
        answer: dict[str, Any] = {"AutoScalingGroups": [self._describe(caller, stack, group, params)
                                                        for stack, group in page]}  # fmt: skip
        if start + records < len(groups):
            answer["NextToken"] = str(start + records)
        return answer

    def _describe(self, caller: Caller, stack: Stack | None, group: Resource, params: dict[str, Any]) -> dict:
        props, name = group.properties, group.physical_id
        instances = self._instances(caller, name)
        uuid = digest(caller.account, caller.region, name)
        answer: dict[str, Any] = {
            "AutoScalingGroupName": name,
            "AutoScalingGroupARN": f"arn:{stack.partition if stack else 'aws'}:autoscaling:{caller.region}:"
                                   f"{caller.account}:autoScalingGroup:{uuid[:8]}-{uuid[8:12]}-{uuid[12:16]}-"
                                   f"{uuid[16:20]}-{uuid[20:32]}:autoScalingGroupName/{name}",
            "MinSize": int(props.get("MinSize", 0)), "MaxSize": int(props.get("MaxSize", 0)),
            "DesiredCapacity": len(instances), "DefaultCooldown": 300,
            "AvailabilityZones": sorted({i.zone for i in instances}) or [f"{caller.region}a"],
            "HealthCheckType": "EC2", "CreatedTime": timestamp(stack.creation_time if stack else 0.0),
            "NewInstancesProtectedFromScaleIn":
                str(props.get("NewInstancesProtectedFromScaleIn", "false")).lower() == "true",
        }  # fmt: skip
        if props.get("VPCZoneIdentifier"):
            answer["VPCZoneIdentifier"] = ",".join(map(str, props["VPCZoneIdentifier"]))
        if params.get("IncludeInstances", True):
            answer["Instances"] = [{"InstanceId": i.instance_id, "AvailabilityZone": i.zone,
                                    "LifecycleState": "InService", "HealthStatus": "Healthy",
                                    "ProtectedFromScaleIn": i.protected} for i in instances]  # fmt: skip
        return answer

    def set_instance_protection(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        name, ids = params["AutoScalingGroupName"], list(params["InstanceIds"])
        if len(ids) > PROTECTION_BATCH:
            raise ModelError("LimitExceeded", f"The number of instance IDs ({len(ids)}) exceeds the maximum of "
                             f"{PROTECTION_BATCH} per call")  # fmt: skip
        if not any(group.physical_id == name for _, group in self._groups(caller)):
            raise ModelError("ValidationError", f"AutoScalingGroup name not found - {name}")
        instances = {i.instance_id: i for i in self._instances(caller, name)}
        for instance_id in ids:
            if instance_id not in instances:
                raise ModelError("ValidationError", f"The instance {instance_id} is not part of Auto Scaling group "
                                 f"{name}.")  # fmt: skip
        for instance_id in ids:
            instances[instance_id].protected = bool(params["ProtectedFromScaleIn"])
        return {}
