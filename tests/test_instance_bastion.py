"""The optional SSH bastion: absent by default, a public-IP task in the public subnets when enabled."""

from __future__ import annotations

from typing import Any

from generator.instance.bastion import add_bastion
from generator.stacks import storage
from stacksets.config import parse_config
from tests.instance_parts import IMAGE_TAGS, groundwork, stack_log_group_name


def build_bastion(cfg, instance: str) -> tuple[object, dict[str, Any]]:
    g = groundwork(cfg, instance)
    bastion = add_bastion(g.template, cfg, instance, g.network, g.groups, g.cluster, g.key, g.stored.bastion_key,
                          image_tag=IMAGE_TAGS["bastion"])  # fmt: skip
    return bastion, g.template.to_dict()["Resources"]


def props(resources: dict[str, Any], name: str) -> dict[str, Any]:
    return resources[name]["Properties"]


def test_dev_has_no_bastion(cfg):
    bastion, resources = build_bastion(cfg, "dev")
    assert bastion is None
    assert not [name for name in resources if name.startswith("Bastion")]


def test_enabling_the_bastion_in_dev_adds_it(example_data):
    example_data["instances"]["dev"]["bastion"] = {"enabled": True, "allowed_cidrs": ["198.51.100.0/24"]}
    bastion, resources = build_bastion(parse_config(example_data), "dev")
    assert bastion is not None
    assert resources["BastionService"]["Type"] == "AWS::ECS::Service"


def test_prod_bastion_runs_one_task_in_the_public_subnets_with_a_public_ip(cfg):
    _, resources = build_bastion(cfg, "prod")
    service = props(resources, "BastionService")
    assert service["DesiredCount"] == 1
    assert service["LaunchType"] == "FARGATE"
    network = service["NetworkConfiguration"]["AwsvpcConfiguration"]
    assert network["Subnets"] == [{"Ref": f"PublicSubnet{zone}"} for zone in "ABC"]
    assert network["AssignPublicIp"] == "ENABLED"
    assert service["EnableExecuteCommand"] is True
    assert service["DeploymentConfiguration"]["DeploymentCircuitBreaker"] == {"Enable": True, "Rollback": True}


def test_bastion_uses_the_ssh_security_group(cfg):
    _, resources = build_bastion(cfg, "prod")
    network = props(resources, "BastionService")["NetworkConfiguration"]["AwsvpcConfiguration"]
    assert network["SecurityGroups"] == [{"Fn::GetAtt": ["BastionSecurityGroup", "GroupId"]}]


def test_only_the_bastion_task_gets_a_public_ip(cfg):
    _, resources = build_bastion(cfg, "prod")
    services = {name: r["Properties"] for name, r in resources.items() if r["Type"] == "AWS::ECS::Service"}
    public = [name for name, s in services.items()
              if s["NetworkConfiguration"]["AwsvpcConfiguration"].get("AssignPublicIp") == "ENABLED"]  # fmt: skip
    assert public == ["BastionService"]


def test_ssh_key_secret_is_encrypted_with_the_instance_key_retained_and_not_in_the_template(cfg):
    # The secret is kept in the storage StackSet; the compute only takes its ARN as a parameter.
    _, resources = build_bastion(cfg, "prod")
    assert not [r for r in resources.values() if r["Type"] == "AWS::SecretsManager::Secret"]
    secret = storage.build(cfg, "prod").to_dict()["Resources"]["BastionSshKeySecret"]
    assert secret["DeletionPolicy"] == "RetainExceptOnCreate"
    assert secret["UpdateReplacePolicy"] == "Retain"
    assert secret["Properties"]["Name"] == "rstudio/prod/bastion/ssh-public-key"
    assert secret["Properties"]["KmsKeyId"] == {"Fn::GetAtt": ["InstanceKey", "Arn"]}
    assert "SecretString" not in secret["Properties"]
    assert "GenerateSecretString" in secret["Properties"]


def test_container_gets_its_key_from_the_secret(cfg):
    _, resources = build_bastion(cfg, "prod")
    task = props(resources, "BastionTaskDefinition")
    [container] = task["ContainerDefinitions"]
    assert container["Name"] == "bastion"
    assert container["Secrets"] == [{"Name": "SSH_PUBLIC_KEY", "ValueFrom": {"Ref": "BastionKeySecretArn"}}]
    assert container["PortMappings"] == [{"ContainerPort": 22, "Protocol": "tcp"}]
    assert container["Image"] == {"Fn::Sub": f"222222222222.dkr.ecr.eu-west-1.${{AWS::URLSuffix}}/bastion:"
                                             f"{IMAGE_TAGS['bastion']}"}  # fmt: skip
    assert container["LinuxParameters"]["InitProcessEnabled"] is True
    assert (task["Cpu"], task["Memory"], task["Family"]) == ("256", "512", "rstudio-prod-bastion")


def test_execution_role_reads_only_the_bastion_secret(cfg):
    _, resources = build_bastion(cfg, "prod")
    task = props(resources, "BastionTaskDefinition")
    assert task["ExecutionRoleArn"] == {"Fn::GetAtt": ["BastionExecutionRole", "Arn"]}
    [policy] = props(resources, "BastionExecutionRole")["Policies"]
    statements = {s["Sid"]: s for s in policy["PolicyDocument"]["Statement"]}
    assert statements["ReadOwnSecrets"]["Resource"] == [{"Ref": "BastionKeySecretArn"}]
    assert statements["DecryptOwnSecrets"]["Resource"] == [{"Ref": "InstanceKeyArn"}]
    assert statements["PullImage"]["Resource"] == [
        {"Fn::Sub": "arn:${AWS::Partition}:ecr:eu-west-1:222222222222:repository/bastion"}]


def test_task_role_grants_ecs_exec_only(cfg):
    _, resources = build_bastion(cfg, "prod")
    assert props(resources, "BastionTaskDefinition")["TaskRoleArn"] == {"Fn::GetAtt": ["BastionTaskRole", "Arn"]}
    [policy] = props(resources, "BastionTaskRole")["Policies"]
    actions = {a for s in policy["PolicyDocument"]["Statement"] for a in s["Action"]}
    assert not any(a.startswith("secretsmanager:") for a in actions)
    assert "ssmmessages:CreateControlChannel" in actions


def test_log_group_is_encrypted_retained_and_kept_as_configured(cfg):
    _, resources = build_bastion(cfg, "prod")
    log_group = resources["BastionLogGroup"]
    assert log_group["DeletionPolicy"] == "RetainExceptOnCreate"
    assert log_group["UpdateReplacePolicy"] == "Retain"
    assert log_group["Properties"]["LogGroupName"] == stack_log_group_name("/rstudio/prod/bastion")
    assert log_group["Properties"]["RetentionInDays"] == 365
    assert log_group["Properties"]["KmsKeyId"] == {"Ref": "InstanceKeyArn"}
