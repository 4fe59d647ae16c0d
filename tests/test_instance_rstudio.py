"""RStudio services: one task per server, only its own secrets, safe deployments, Fargate or EC2 capacity."""

from __future__ import annotations

from typing import Any

import pytest
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

from generator.instance.capacity import add_ec2_capacity
from generator.instance.rstudio import add_rstudio
from generator.instance.servers import rstudio_servers
from generator.stacks import storage
from stacksets.config import LaunchType, parse_config
from tests.instance_parts import IMAGE_TAGS, Groundwork, groundwork, stack_log_group_name

USERS = ("alice", "bob", "chen")


def stand_in_ingress(g: Groundwork, cfg, instance: str) -> tuple[dict[str, TargetGroup], dict[str, ListenerRule]]:
    """The smallest ALB, listener, target groups and rules the services can attach to (ingress builds the real ones)."""
    t = g.template
    alb = t.add_resource(LoadBalancer("StandInAlb", Scheme="internet-facing", Type="application",
                                      Subnets=[Ref(s) for s in g.network.public_subnets],
                                      SecurityGroups=[GetAtt(g.groups.alb, "GroupId")]))  # fmt: skip
    listener = t.add_resource(Listener("StandInListener", LoadBalancerArn=Ref(alb), Port=80, Protocol="HTTP",
                                       DefaultActions=[Action(Type="fixed-response", FixedResponseConfig=
                                                              FixedResponseConfig(StatusCode="404"))]))  # fmt: skip
    groups, rules = {}, {}
    for priority, server in enumerate(rstudio_servers(cfg, instance), start=1):
        groups[server.key] = t.add_resource(TargetGroup(server.id("StandInTargetGroup"), Port=8787, Protocol="HTTP",
                                                        TargetType="ip", VpcId=Ref(g.network.vpc)))  # fmt: skip
        rules[server.key] = t.add_resource(ListenerRule(
            server.id("StandInRule"), ListenerArn=Ref(listener), Priority=priority,
            Conditions=[Condition(Field="host-header", Values=[server.host])],
            Actions=[ListenerRuleAction(Type="forward", TargetGroupArn=Ref(groups[server.key]))]))  # fmt: skip
    return groups, rules


def build_rstudio(cfg, instance: str) -> dict[str, Any]:
    """Groundwork, stand-in ingress, secrets, EC2 capacity where configured and the RStudio services: the resources."""
    g = groundwork(cfg, instance)
    target_groups, rules = stand_in_ingress(g, cfg, instance)
    secrets = g.stored.secrets
    on_ec2 = cfg.instances[instance].rstudio.launch_type is LaunchType.ec2
    capacity = add_ec2_capacity(g.template, cfg, instance, g.network, g.cluster, g.key) if on_ec2 else None
    add_rstudio(g.template, cfg, instance, g.network, g.groups, g.cluster, g.key, g.rstudio_task_roles, secrets,
                target_groups, rules, capacity, image_tag=IMAGE_TAGS["rstudio"])  # fmt: skip
    return g.template.to_dict()["Resources"]


def of_type(resources: dict[str, Any], kind: str) -> dict[str, Any]:
    return {name: r for name, r in resources.items() if r["Type"] == kind}


def container(resources: dict[str, Any], definition: str) -> dict[str, Any]:
    (only,) = resources[definition]["Properties"]["ContainerDefinitions"]
    return only


def stored_secret_names(cfg, instance: str) -> dict[tuple[str, int], str]:
    """(list parameter, position) -> the name of the secret the storage stack lists there. The compute stack picks
    each secret from its PasswordSecretArns or CookieKeySecretArns parameter, filled from these outputs."""
    template = storage.build(cfg, instance).to_dict()
    names = {}
    for parameter in ("PasswordSecretArns", "CookieKeySecretArns"):
        for index, ref in enumerate(template["Outputs"][parameter]["Value"]["Fn::Join"][1]):
            names[parameter, index] = template["Resources"][ref["Ref"]]["Properties"]["Name"]
    return names


def picked(select: dict[str, Any], stored: dict[tuple[str, int], str]) -> str:
    """The name of the secret an `Fn::Select [i, Ref <list parameter>]` picks."""
    index, ref = select["Fn::Select"]
    return stored[ref["Ref"], index]


def secrets_of(resources: dict[str, Any], definition: str, stored: dict[tuple[str, int], str]) -> dict[str, str]:
    """Container variable -> the name of the secret it is read from."""
    return {s["Name"]: picked(s["ValueFrom"], stored) for s in container(resources, definition)["Secrets"]}


def environment_of(resources: dict[str, Any], definition: str) -> dict[str, Any]:
    return {e["Name"]: e["Value"] for e in container(resources, definition)["Environment"]}


def readable_secrets(resources: dict[str, Any], role: str, stored: dict[tuple[str, int], str]) -> set[str]:
    statements = [s for p in resources[role]["Properties"]["Policies"] for s in p["PolicyDocument"]["Statement"]]
    return {picked(r, stored) for s in statements if "secretsmanager:GetSecretValue" in s["Action"]
            for r in s["Resource"]}  # fmt: skip


def fargate_prod(example_data: dict[str, Any]):
    rstudio = example_data["instances"]["prod"]["rstudio"]
    rstudio.update(launch_type="fargate", cpu=4096, memory=30720)
    del rstudio["ec2_instance_type"]
    return parse_config(example_data)


def test_per_user_mode_runs_one_service_and_task_definition_per_user(cfg):
    resources = build_rstudio(cfg, "prod")
    assert sorted(of_type(resources, "AWS::ECS::Service")) == [f"{u.title()}RStudioService" for u in USERS]
    definitions = of_type(resources, "AWS::ECS::TaskDefinition")
    assert sorted(d["Properties"]["Family"] for d in definitions.values()) == [
        f"rstudio-prod-rstudio-{u}" for u in USERS
    ]


@pytest.mark.parametrize("user", USERS)
def test_each_per_user_task_gets_only_its_own_password_and_cookie_key(cfg, user):
    resources, stored = build_rstudio(cfg, "prod"), stored_secret_names(cfg, "prod")
    prefix = user.title()
    own = {f"PASSWORD_{user.upper()}": f"rstudio/prod/users/{user}/password",
           "SECURE_COOKIE_KEY": f"rstudio/prod/rstudio-{user}/secure-cookie-key"}  # fmt: skip
    assert secrets_of(resources, f"{prefix}RStudioTaskDefinition", stored) == own
    assert environment_of(resources, f"{prefix}RStudioTaskDefinition")["RSTUDIO_USERS"] == \
        f"{user}:{cfg.instances['prod'].users[user].uid}"  # fmt: skip
    # ECS reads secrets with the execution role: it can fetch exactly these, so no task can start with another's.
    definition = resources[f"{prefix}RStudioTaskDefinition"]["Properties"]
    role = definition["ExecutionRoleArn"]["Fn::GetAtt"][0]
    assert role == f"{prefix}RStudioExecutionRole"
    assert readable_secrets(resources, role, stored) == set(own.values())
    # The secrets themselves are the storage stack's; the compute stack holds none.
    assert not of_type(resources, "AWS::SecretsManager::Secret")


def test_shared_server_gets_every_users_password_the_admins_and_one_cookie_key(cfg):
    resources, stored = build_rstudio(cfg, "dev"), stored_secret_names(cfg, "dev")
    assert list(of_type(resources, "AWS::ECS::Service")) == ["RStudioService"]
    expected = {"PASSWORD_DANA": "rstudio/dev/users/dana/password", "PASSWORD_ERIK": "rstudio/dev/users/erik/password",
                "PASSWORD_RSTUDIO": "rstudio/dev/users/rstudio/password",
                "SECURE_COOKIE_KEY": "rstudio/dev/rstudio/secure-cookie-key"}  # fmt: skip
    assert secrets_of(resources, "RStudioTaskDefinition", stored) == expected
    assert readable_secrets(resources, "RStudioExecutionRole", stored) == set(expected.values())
    assert environment_of(resources, "RStudioTaskDefinition")["RSTUDIO_USERS"] == "dana:2001 erik:2002 rstudio:1000"


def test_password_variables_follow_the_contract_for_hyphenated_names(example_data):
    example_data["instances"]["dev"]["users"]["mary-jo"] = {"email": "mj@example.com", "uid": 2003}
    cfg = parse_config(example_data)
    resources = build_rstudio(cfg, "dev")
    found = secrets_of(resources, "RStudioTaskDefinition", stored_secret_names(cfg, "dev"))
    assert found["PASSWORD_MARY_JO"] == "rstudio/dev/users/mary-jo/password"
    assert environment_of(resources, "RStudioTaskDefinition")["RSTUDIO_USERS"] == \
        "dana:2001 erik:2002 mary-jo:2003 rstudio:1000"  # fmt: skip


def test_container_follows_the_contract(cfg):
    resources = build_rstudio(cfg, "prod")
    rstudio = container(resources, "AliceRStudioTaskDefinition")
    assert rstudio["Name"] == "rstudio" and rstudio["Essential"] is True
    assert rstudio["PortMappings"] == [{"ContainerPort": 8787, "Protocol": "tcp"}]
    assert rstudio["LinuxParameters"] == {"InitProcessEnabled": True}
    assert rstudio["StopTimeout"] == 120
    assert rstudio["Ulimits"] == [{"Name": "nofile", "SoftLimit": 65536, "HardLimit": 65536}]
    assert "Command" not in rstudio and "EntryPoint" not in rstudio and "User" not in rstudio  # rocker's /init
    environment = environment_of(resources, "AliceRStudioTaskDefinition")
    assert environment == {
        "ATHENA_REGION": "eu-west-1",
        "ATHENA_ROLE_ARN": {"Fn::Sub": "arn:${AWS::Partition}:iam::444444444444:role/rstudio-prod-athena"},
        "ATHENA_WORKGROUP": "rstudio-prod",
        "AWS_DEFAULT_REGION": {"Ref": "AWS::Region"},
        "RSTUDIO_USERS": "alice:3001",
    }  # no DISABLE_AUTH, no plain PASSWORD: authentication always on, passwords only as secrets
    logs = rstudio["LogConfiguration"]
    assert logs["LogDriver"] == "awslogs" and logs["Options"]["awslogs-group"] == {"Ref": "AliceRStudioLogGroup"}


def test_each_server_logs_to_its_own_encrypted_retained_group(cfg):
    expected = {
        "dev": {"RStudioLogGroup": "/rstudio/dev/rstudio"},
        "prod": {f"{u.title()}RStudioLogGroup": f"/rstudio/prod/rstudio-{u}" for u in USERS},
    }
    for instance, names in expected.items():
        resources = build_rstudio(cfg, instance)
        # on EC2 the capacity's scale-in release function logs too (generator/instance/asg_release.py)
        on_ec2 = ["AsgReleaseLogGroup"] if cfg.instances[instance].rstudio.launch_type.value == "ec2" else []
        assert sorted(of_type(resources, "AWS::Logs::LogGroup")) == sorted([*names, *on_ec2, "ExecLogGroup",
                                                                            "FlowLogGroup"])  # fmt: skip
        for title, name in names.items():
            group = resources[title]
            assert group["Properties"]["LogGroupName"] == stack_log_group_name(name)
            assert group["Properties"]["RetentionInDays"] == cfg.instances[instance].logs.retention_days
            assert group["Properties"]["KmsKeyId"] == {"Ref": "InstanceKeyArn"}
            assert group["DeletionPolicy"] == "RetainExceptOnCreate"
            assert group["UpdateReplacePolicy"] == "Retain"


def test_images_come_from_the_central_ecr_by_their_content_tag(cfg):
    resources = build_rstudio(cfg, "dev")
    assert container(resources, "RStudioTaskDefinition")["Image"] == {
        "Fn::Sub": f"222222222222.dkr.ecr.eu-west-1.${{AWS::URLSuffix}}/rstudio:{IMAGE_TAGS['rstudio']}"
    }


@pytest.mark.parametrize("instance,service", [("dev", "RStudioService"), ("prod", "BobRStudioService")])
def test_services_run_one_task_never_two_on_a_home_and_roll_back_failures(cfg, instance, service):
    resources = build_rstudio(cfg, instance)
    props = resources[service]["Properties"]
    assert props["DesiredCount"] == 1
    assert props["DeploymentConfiguration"] == {
        "MinimumHealthyPercent": 0, "MaximumPercent": 100,
        "DeploymentCircuitBreaker": {"Enable": True, "Rollback": True},
    }  # fmt: skip
    assert props["EnableExecuteCommand"] is True
    assert props["HealthCheckGracePeriodSeconds"] == cfg.instances[instance].rstudio.health_check_grace_seconds
    assert props["PropagateTags"] == "SERVICE"
    network = props["NetworkConfiguration"]["AwsvpcConfiguration"]
    assert network["AssignPublicIp"] == "DISABLED"
    assert network["SecurityGroups"] == [{"Fn::GetAtt": ["RStudioSecurityGroup", "GroupId"]}]
    assert all(subnet["Ref"].startswith("PrivateSubnet") for subnet in network["Subnets"])
    prefix = service.removesuffix("RStudioService")
    (balancer,) = props["LoadBalancers"]
    assert balancer == {"ContainerName": "rstudio", "ContainerPort": 8787,
                        "TargetGroupArn": {"Ref": f"{prefix}RStudioStandInTargetGroup"}}  # fmt: skip
    assert f"{prefix}RStudioStandInRule" in resources[service]["DependsOn"]


def test_grace_period_follows_the_config(example_data):
    example_data["instances"]["dev"]["rstudio"]["health_check_grace_seconds"] = 1200
    resources = build_rstudio(parse_config(example_data), "dev")
    assert resources["RStudioService"]["Properties"]["HealthCheckGracePeriodSeconds"] == 1200


def test_fargate_tasks_take_their_size_from_the_config(example_data):
    example_data["instances"]["dev"]["rstudio"].update(cpu=4096, memory=16384)
    resources = build_rstudio(parse_config(example_data), "dev")
    definition = resources["RStudioTaskDefinition"]["Properties"]
    assert (definition["Cpu"], definition["Memory"]) == ("4096", "16384")
    assert definition["RequiresCompatibilities"] == ["FARGATE"]
    assert definition["NetworkMode"] == "awsvpc"
    assert definition["RuntimePlatform"] == {"OperatingSystemFamily": "LINUX", "CpuArchitecture": "X86_64"}
    service = resources["RStudioService"]["Properties"]
    assert (service["LaunchType"], service["PlatformVersion"]) == ("FARGATE", "1.4.0")
    assert "CapacityProviderStrategy" not in service


def test_ec2_launch_type_places_tasks_through_the_capacity_provider(cfg):
    resources = build_rstudio(cfg, "prod")
    for user in USERS:
        service = resources[f"{user.title()}RStudioService"]
        assert "LaunchType" not in service["Properties"] and "PlatformVersion" not in service["Properties"]
        assert service["Properties"]["CapacityProviderStrategy"] == [
            {"CapacityProvider": {"Ref": "RStudioCapacityProvider"}, "Weight": 1}
        ]
        assert "ClusterCapacityProviders" in service["DependsOn"]
        definition = resources[f"{user.title()}RStudioTaskDefinition"]["Properties"]
        assert definition["RequiresCompatibilities"] == ["EC2"]
        assert (definition["Cpu"], definition["Memory"]) == ("4096", "57344")
    assert len(of_type(resources, "AWS::AutoScaling::AutoScalingGroup")) == 1


def test_a_fargate_prod_has_no_ec2_capacity(example_data):
    resources = build_rstudio(fargate_prod(example_data), "prod")
    for kind in ("AWS::AutoScaling::AutoScalingGroup", "AWS::EC2::LaunchTemplate", "AWS::ECS::CapacityProvider",
                 "AWS::ECS::ClusterCapacityProviderAssociations"):  # fmt: skip
        assert not of_type(resources, kind), kind
    assert "EcsAmiId" not in str(resources)
    services = of_type(resources, "AWS::ECS::Service")
    assert len(services) == 3
    assert {s["Properties"]["LaunchType"] for s in services.values()} == {"FARGATE"}


def test_capacity_must_match_the_launch_type(cfg):
    g = groundwork(cfg, "dev")
    secrets = g.stored.secrets
    with pytest.raises(ValueError, match="exactly when"):
        add_rstudio(g.template, cfg, "dev", g.network, g.groups, g.cluster, g.key, g.rstudio_task_roles, secrets,
                    {}, {}, capacity=object(), image_tag=IMAGE_TAGS["rstudio"])  # type: ignore[arg-type]  # fmt: skip


def test_task_roles_gain_only_the_separate_ecs_exec_policy(cfg):
    roles = [f"{user.title()}RStudioTaskRole" for user in USERS]
    untouched = groundwork(cfg, "prod").template.to_dict()["Resources"]
    resources = build_rstudio(cfg, "prod")
    assert {role: resources[role] for role in roles} == {role: untouched[role] for role in roles}
    policies = of_type(resources, "AWS::IAM::Policy")
    assert list(policies) == ["RStudioTaskRoleEcsExecPolicy"]
    policy = policies["RStudioTaskRoleEcsExecPolicy"]["Properties"]
    assert policy["Roles"] == [{"Ref": role} for role in roles]
    actions = {a for s in policy["PolicyDocument"]["Statement"] for a in s["Action"]}
    assert "ssmmessages:OpenDataChannel" in actions
    assert {a.split(":")[0] for a in actions} == {"ssmmessages", "logs", "kms"}
    for user in USERS:
        definition = resources[f"{user.title()}RStudioTaskDefinition"]["Properties"]
        assert definition["TaskRoleArn"] == {"Fn::GetAtt": [f"{user.title()}RStudioTaskRole", "Arn"]}
        assert "RStudioTaskRoleEcsExecPolicy" in resources[f"{user.title()}RStudioService"]["DependsOn"]


# Resource "*" only where the API has no resource-level permissions; in a key policy "*" means the key itself.
STAR_RESOURCE_ACTIONS = {"ecr:GetAuthorizationToken", "ssmmessages:CreateControlChannel",
                         "ssmmessages:CreateDataChannel", "ssmmessages:OpenControlChannel",
                         "ssmmessages:OpenDataChannel", "autoscaling:DescribeAutoScalingGroups"}  # fmt: skip


def statements(node: Any) -> list[dict[str, Any]]:
    if isinstance(node, list):
        return [s for value in node for s in statements(value)]
    if not isinstance(node, dict):
        return []
    own = node.get("Statement")
    return (own if isinstance(own, list) else []) + [s for value in node.values() for s in statements(value)]


def test_no_wildcards_beyond_the_documented_exceptions(cfg):
    resources = build_rstudio(cfg, "prod")
    for name, resource in resources.items():
        for statement in statements(resource.get("Properties", {})):
            actions = statement["Action"]
            assert "*" not in actions and not any(a.endswith(":*") for a in actions), name
            if statement.get("Principal") in ("*", {"AWS": "*"}):
                assert "aws:PrincipalArn" in statement["Condition"]["ArnEquals"], name
            if "*" in statement.get("Resource", []) and resource["Type"] != "AWS::KMS::Key":
                assert set(actions) <= STAR_RESOURCE_ACTIONS, (name, actions)
