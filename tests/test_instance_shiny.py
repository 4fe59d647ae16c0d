"""The Shiny service: replicas in private subnets, rolling deployments, autoscaling from config, no data access."""

from __future__ import annotations

import json
from typing import Any, NamedTuple

import pytest
from cfn_tools import load_yaml
from troposphere import GetAtt, Ref
from troposphere.elasticloadbalancingv2 import (
    Action,
    Condition,
    FixedResponseConfig,
    Listener,
    ListenerRule,
    ListenerRuleAction,
    LoadBalancer,
    TargetGroup,
)

from generator.instance.shiny import ShinyService, add_shiny
from stacksets.config import parse_config
from tests.conftest import TEMPLATES
from tests.instance_parts import IMAGE_TAGS, Groundwork, groundwork, stack_log_group_name


class Ingress(NamedTuple):
    load_balancer: LoadBalancer
    target_group: TargetGroup
    rule: ListenerRule


def stand_in_ingress(g: Groundwork) -> Ingress:
    """The smallest ALB, listener, target group and rule a service can attach to (ingress builds the real ones)."""
    t = g.template
    alb = t.add_resource(LoadBalancer("StandInAlb", Scheme="internet-facing", Type="application",
                                      Subnets=[Ref(s) for s in g.network.public_subnets],
                                      SecurityGroups=[GetAtt(g.groups.alb, "GroupId")]))  # fmt: skip
    group = t.add_resource(TargetGroup("StandInShinyTargetGroup", Port=3838, Protocol="HTTP", TargetType="ip",
                                       VpcId=Ref(g.network.vpc), HealthCheckPath="/ping"))  # fmt: skip
    not_found = Action(Type="fixed-response", FixedResponseConfig=FixedResponseConfig(StatusCode="404"))
    listener = t.add_resource(Listener("StandInListener", LoadBalancerArn=Ref(alb), Port=80, Protocol="HTTP",
                                       DefaultActions=[not_found]))  # fmt: skip
    forward = ListenerRuleAction(Type="forward", TargetGroupArn=Ref(group))
    rule = t.add_resource(ListenerRule("StandInShinyRule", ListenerArn=Ref(listener), Priority=1, Actions=[forward],
                                       Conditions=[Condition(Field="host-header", Values=["shiny.example.com"])]))
    return Ingress(alb, group, rule)


def build_shiny(cfg, instance: str) -> tuple[ShinyService, dict[str, Any]]:
    g = groundwork(cfg, instance)
    ingress = stand_in_ingress(g)
    shiny = add_shiny(g.template, cfg, instance, g.network, g.groups, g.cluster, g.key, ingress.load_balancer,
                      ingress.target_group, ingress.rule, image_tag=IMAGE_TAGS["shiny"])  # fmt: skip
    return shiny, g.template.to_dict()["Resources"]


def props(resources: dict[str, Any], name: str) -> dict[str, Any]:
    return resources[name]["Properties"]


def of_type(resources: dict[str, Any], kind: str) -> dict[str, Any]:
    return {name: r["Properties"] for name, r in resources.items() if r["Type"] == kind}


@pytest.mark.parametrize("instance", ["dev", "prod"])
def test_service_runs_in_every_private_subnet_without_public_ip(cfg, instance):
    _, resources = build_shiny(cfg, instance)
    service = props(resources, "ShinyService")
    zones = "ABC"[: cfg.instances[instance].network.availability_zones]
    assert service["LaunchType"] == "FARGATE"
    network = service["NetworkConfiguration"]["AwsvpcConfiguration"]
    assert network["Subnets"] == [{"Ref": f"PrivateSubnet{zone}"} for zone in zones]
    assert network["AssignPublicIp"] == "DISABLED"
    assert network["SecurityGroups"] == [{"Fn::GetAtt": ["ShinySecurityGroup", "GroupId"]}]


def test_service_registers_into_the_shiny_target_group_once_the_rule_exists(cfg):
    _, resources = build_shiny(cfg, "dev")
    service = props(resources, "ShinyService")
    assert service["LoadBalancers"] == [{"ContainerName": "shiny", "ContainerPort": 3838,
                                         "TargetGroupArn": {"Ref": "StandInShinyTargetGroup"}}]  # fmt: skip
    # The rule first, then the private subnets' way out (NAT routes and route-table associations) to pull the image.
    egress = [name for zone in "AB" for name in (f"PrivateDefaultRoute{zone}",
                                                 f"PrivateSubnet{zone}RouteTableAssociation")]  # fmt: skip
    assert resources["ShinyService"]["DependsOn"] == ["StandInShinyRule", *egress]
    assert service["HealthCheckGracePeriodSeconds"] > 0


def test_deployments_roll_without_downtime_and_roll_back_on_failure(cfg):
    _, resources = build_shiny(cfg, "dev")
    service = props(resources, "ShinyService")
    deployment = service["DeploymentConfiguration"]
    assert (deployment["MinimumHealthyPercent"], deployment["MaximumPercent"]) == (100, 200)
    assert deployment["DeploymentCircuitBreaker"] == {"Enable": True, "Rollback": True}
    assert service["EnableExecuteCommand"] is True


@pytest.mark.parametrize("instance", ["dev", "prod"])
def test_scalable_target_bounds_come_from_config(cfg, instance):
    _, resources = build_shiny(cfg, instance)
    scaling = cfg.instances[instance].shiny.autoscaling
    target = props(resources, "ShinyScalableTarget")
    assert (target["MinCapacity"], target["MaxCapacity"]) == (scaling.min, scaling.max)
    assert target["ScalableDimension"] == "ecs:service:DesiredCount"
    assert target["ServiceNamespace"] == "ecs"
    assert target["ResourceId"] == {"Fn::Sub": ["service/${Cluster}/${Service}", {
        "Cluster": {"Ref": "Cluster"}, "Service": {"Fn::GetAtt": ["ShinyService", "Name"]}}]}  # fmt: skip
    assert "RoleARN" not in target  # the service-linked role


@pytest.mark.parametrize("template", ["rstudio-dev.yaml", "rstudio-prod.yaml"])
def test_a_stack_update_leaves_an_autoscaled_task_count_alone(template):
    """CloudFormation sets DesiredCount on every update that names it, resetting what Application Auto Scaling chose;
    left out, an update keeps the count, and a create starts 1 task that registering the scalable target raises to
    its MinCapacity. Services nothing scales keep their DesiredCount."""
    resources = load_yaml((TEMPLATES / template).read_text(encoding="utf-8"))["Resources"]
    services = {name for name, r in resources.items() if r["Type"] == "AWS::ECS::Service"}
    targets = [json.dumps(r["Properties"]["ResourceId"]) for r in resources.values()
               if r["Type"] == "AWS::ApplicationAutoScaling::ScalableTarget"
               and r["Properties"]["ScalableDimension"] == "ecs:service:DesiredCount"]  # fmt: skip
    scaled = {name for name in services for target in targets if f'"{name}"' in target}
    assert "ShinyService" in scaled
    assert [name for name in sorted(scaled) if "DesiredCount" in resources[name]["Properties"]] == []
    assert [name for name in sorted(services - scaled) if "DesiredCount" not in resources[name]["Properties"]] == []


def test_prod_scaling_policies_use_its_custom_targets_and_cooldowns(cfg):
    _, resources = build_shiny(cfg, "prod")
    policies = of_type(resources, "AWS::ApplicationAutoScaling::ScalingPolicy")
    configs = {p["TargetTrackingScalingPolicyConfiguration"]["PredefinedMetricSpecification"]["PredefinedMetricType"]:
               p["TargetTrackingScalingPolicyConfiguration"] for p in policies.values()}  # fmt: skip
    assert {metric: c["TargetValue"] for metric, c in configs.items()} == {
        "ECSServiceAverageCPUUtilization": 65.0,
        "ECSServiceAverageMemoryUtilization": 75.0,
        "ALBRequestCountPerTarget": 40.0,
    }
    assert all((c["ScaleInCooldown"], c["ScaleOutCooldown"]) == (300, 60) for c in configs.values())
    assert all(p["PolicyType"] == "TargetTrackingScaling" for p in policies.values())
    assert all(p["ScalingTargetId"] == {"Ref": "ShinyScalableTarget"} for p in policies.values())


def test_cooldowns_follow_config(example_data):
    example_data["instances"]["dev"]["shiny"]["autoscaling"].update(scale_in_cooldown_seconds=900,
                                                                    scale_out_cooldown_seconds=30)  # fmt: skip
    _, resources = build_shiny(parse_config(example_data), "dev")
    policies = of_type(resources, "AWS::ApplicationAutoScaling::ScalingPolicy").values()
    cooldowns = {(p["TargetTrackingScalingPolicyConfiguration"]["ScaleInCooldown"],
                  p["TargetTrackingScalingPolicyConfiguration"]["ScaleOutCooldown"]) for p in policies}  # fmt: skip
    assert cooldowns == {(900, 30)}


def test_request_count_policy_is_labelled_with_the_alb_and_the_shiny_target_group(cfg):
    _, resources = build_shiny(cfg, "dev")
    spec = props(resources, "ShinyRequestsScalingPolicy")["TargetTrackingScalingPolicyConfiguration"][
        "PredefinedMetricSpecification"]
    assert spec["ResourceLabel"] == {"Fn::Sub": ["${Alb}/${TargetGroup}", {
        "Alb": {"Fn::GetAtt": ["StandInAlb", "LoadBalancerFullName"]},
        "TargetGroup": {"Fn::GetAtt": ["StandInShinyTargetGroup", "TargetGroupFullName"]}}]}  # fmt: skip
    for other in ("ShinyCpuScalingPolicy", "ShinyMemoryScalingPolicy"):
        assert "ResourceLabel" not in props(resources, other)["TargetTrackingScalingPolicyConfiguration"][
            "PredefinedMetricSpecification"]


@pytest.mark.parametrize("instance", ["dev", "prod"])
def test_task_definition_runs_the_pinned_image_at_the_configured_size(cfg, instance):
    _, resources = build_shiny(cfg, instance)
    settings = cfg.instances[instance].shiny
    task = props(resources, "ShinyTaskDefinition")
    assert task["Family"] == f"rstudio-{instance}-shiny"
    assert (task["Cpu"], task["Memory"]) == (str(settings.cpu), str(settings.memory))
    assert task["RequiresCompatibilities"] == ["FARGATE"] and task["NetworkMode"] == "awsvpc"
    [container] = task["ContainerDefinitions"]
    assert container["Name"] == "shiny"
    assert container["Image"] == {"Fn::Sub": f"222222222222.dkr.ecr.eu-west-1.${{AWS::URLSuffix}}/shiny:"
                                             f"{IMAGE_TAGS['shiny']}"}  # fmt: skip
    assert container["PortMappings"] == [{"ContainerPort": 3838, "Protocol": "tcp"}]
    assert {"Name": "SHINY_LOG_STDERR", "Value": "1"} in container["Environment"]
    assert "Secrets" not in container
    assert container["LinuxParameters"]["InitProcessEnabled"] is True
    assert container["LogConfiguration"]["Options"]["awslogs-group"] == {"Ref": "ShinyLogGroup"}


def test_log_group_is_encrypted_retained_and_kept_as_configured(cfg):
    _, resources = build_shiny(cfg, "prod")
    log_group = resources["ShinyLogGroup"]
    assert log_group["DeletionPolicy"] == "RetainExceptOnCreate"
    assert log_group["UpdateReplacePolicy"] == "Retain"
    assert log_group["Properties"] == {"LogGroupName": stack_log_group_name("/rstudio/prod/shiny"),
                                       "RetentionInDays": 365, "KmsKeyId": {"Ref": "InstanceKeyArn"}}  # fmt: skip


def test_task_role_grants_ecs_exec_only_and_no_data_access(cfg):
    shiny, resources = build_shiny(cfg, "prod")
    role = props(resources, "ShinyTaskRole")
    task = props(resources, "ShinyTaskDefinition")
    assert task["TaskRoleArn"] == {"Fn::GetAtt": ["ShinyTaskRole", "Arn"]}
    assert shiny.task_role.title == "ShinyTaskRole"
    # Fixed: the file-system policy in the storage StackSet names it, and must not depend on the compute stack.
    assert role["RoleName"] == "rstudio-prod-shiny-task"
    [policy] = role["Policies"]
    sids = {s["Sid"] for s in policy["PolicyDocument"]["Statement"]}
    assert sids == {"EcsExecChannels", "EcsExecSessionLogs", "EcsExecDescribeLogGroups", "EcsExecSessionKey"}
    actions = {a for s in policy["PolicyDocument"]["Statement"] for a in s["Action"]}
    assert not any(a.startswith(("s3:", "athena:", "sts:", "glue:", "secretsmanager:")) for a in actions)


def test_execution_role_reads_no_secrets_and_pulls_only_the_shiny_repository(cfg):
    _, resources = build_shiny(cfg, "dev")
    [policy] = props(resources, "ShinyExecutionRole")["Policies"]
    statements = {s["Sid"]: s for s in policy["PolicyDocument"]["Statement"]}
    assert "ReadOwnSecrets" not in statements
    assert statements["PullImage"]["Resource"] == [
        {"Fn::Sub": "arn:${AWS::Partition}:ecr:eu-west-1:222222222222:repository/shiny"}]
    assert statements["WriteLogs"]["Resource"] == [{"Fn::Sub": ["${Group}:*",
                                                                {"Group": {"Fn::GetAtt": ["ShinyLogGroup", "Arn"]}}]}]
