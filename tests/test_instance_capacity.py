"""EC2 capacity for RStudio: hardened container instances behind an ECS capacity provider with managed scaling."""

from __future__ import annotations

from typing import Any

import pytest

from generator.common import new_template
from generator.instance.capacity import add_ec2_capacity
from generator.stacks import storage
from tests.instance_parts import groundwork

SLR = "arn:${AWS::Partition}:iam::${AWS::AccountId}:role/aws-service-role/autoscaling.amazonaws.com/" \
      "AWSServiceRoleForAutoScaling"  # fmt: skip


def build_capacity(cfg, instance: str = "prod") -> dict[str, Any]:
    g = groundwork(cfg, instance)
    add_ec2_capacity(g.template, cfg, instance, g.network, g.cluster, g.key)
    return g.template.to_dict()


def props(template: dict[str, Any], name: str) -> dict[str, Any]:
    return template["Resources"][name]["Properties"]


def test_instances_run_the_ecs_optimized_al2023_ami_from_the_public_parameter(cfg):
    template = build_capacity(cfg)
    assert template["Parameters"]["EcsAmiId"]["Type"] == "AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>"
    assert template["Parameters"]["EcsAmiId"]["Default"] == \
        "/aws/service/ecs/optimized-ami/amazon-linux-2023/recommended/image_id"  # fmt: skip
    data = props(template, "ContainerInstanceLaunchTemplate")["LaunchTemplateData"]
    assert data["ImageId"] == {"Ref": "EcsAmiId"}
    assert data["InstanceType"] == "r6i.2xlarge"


def test_launch_template_requires_imdsv2_encrypts_the_root_volume_and_has_no_public_ip(cfg):
    data = props(build_capacity(cfg), "ContainerInstanceLaunchTemplate")["LaunchTemplateData"]
    assert data["MetadataOptions"] == {"HttpEndpoint": "enabled", "HttpTokens": "required",
                                       "HttpPutResponseHopLimit": 1}  # fmt: skip
    (volume,) = data["BlockDeviceMappings"]
    assert volume["Ebs"]["Encrypted"] is True
    assert volume["Ebs"]["KmsKeyId"] == {"Ref": "InstanceKeyArn"}
    (interface,) = data["NetworkInterfaces"]
    assert interface["AssociatePublicIpAddress"] is False
    assert interface["Groups"] == [{"Fn::GetAtt": ["ContainerInstanceSecurityGroup", "GroupId"]}]
    assert "KeyName" not in data  # admins use SSM Session Manager


def test_user_data_joins_the_cluster_and_blocks_imds_for_tasks(cfg):
    data = props(build_capacity(cfg), "ContainerInstanceLaunchTemplate")["LaunchTemplateData"]
    body, variables = data["UserData"]["Fn::Base64"]["Fn::Sub"]
    assert variables == {"Cluster": {"Ref": "Cluster"}}
    lines = body.splitlines()
    for setting in ("ECS_CLUSTER=${Cluster}", "ECS_ENABLE_TASK_IAM_ROLE=true", "ECS_AWSVPC_BLOCK_IMDS=true"):
        assert setting in lines
    assert "/etc/ecs/ecs.config" in body


def test_container_instances_take_no_inbound_traffic_and_reach_out_on_https_only(cfg):
    template = build_capacity(cfg)
    group = props(template, "ContainerInstanceSecurityGroup")
    assert [(r["IpProtocol"], r["FromPort"], r["ToPort"]) for r in group["SecurityGroupEgress"]] == [("tcp", 443, 443)]
    assert "SecurityGroupIngress" not in group
    ingress = [r for r in template["Resources"].values() if r["Type"] == "AWS::EC2::SecurityGroupIngress"]
    assert not [r for r in ingress if "ContainerInstanceSecurityGroup" in str(r["Properties"]["GroupId"])]


def test_instance_role_has_only_the_ecs_and_ssm_managed_policies(cfg):
    role = props(build_capacity(cfg), "ContainerInstanceRole")
    assert role["ManagedPolicyArns"] == [
        {"Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/service-role/AmazonEC2ContainerServiceforEC2Role"},
        {"Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/AmazonSSMManagedInstanceCore"},
    ]
    assert "Policies" not in role
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "ec2.amazonaws.com"}


def test_auto_scaling_group_spans_the_private_subnets_and_starts_empty(cfg):
    asg = props(build_capacity(cfg), "ContainerInstanceGroup")
    assert asg["VPCZoneIdentifier"] == [{"Ref": f"PrivateSubnet{zone}"} for zone in "ABC"]
    assert asg["MinSize"] == "0"
    assert asg["MaxSize"] == "4"  # three per-user servers plus one spare for a replacement
    assert "DesiredCapacity" not in asg  # managed scaling owns it; a stack update must not reset it
    assert asg["NewInstancesProtectedFromScaleIn"] is True
    assert asg["LaunchTemplate"]["Version"] == {"Fn::GetAtt": ["ContainerInstanceLaunchTemplate",
                                                               "LatestVersionNumber"]}  # fmt: skip
    assert {"Key": "AmazonECSManaged", "Value": "true", "PropagateAtLaunch": True} in asg["Tags"]


def test_capacity_provider_scales_and_protects_instances_and_fargate_stays_available(cfg):
    template = build_capacity(cfg)
    provider = props(template, "RStudioCapacityProvider")["AutoScalingGroupProvider"]
    assert provider["AutoScalingGroupArn"] == {"Ref": "ContainerInstanceGroup"}
    assert provider["ManagedScaling"] == {"Status": "ENABLED", "TargetCapacity": 100}
    assert provider["ManagedTerminationProtection"] == "ENABLED"
    associations = props(template, "ClusterCapacityProviders")
    assert associations["Cluster"] == {"Ref": "Cluster"}
    assert associations["CapacityProviders"] == ["FARGATE", {"Ref": "RStudioCapacityProvider"}]


def test_key_policy_lets_exactly_the_auto_scaling_service_linked_role_use_the_key(cfg):
    # The key is kept in the storage StackSet, which grants Auto Scaling when the instance runs RStudio on EC2.
    assert "InstanceKey" not in build_capacity(cfg)["Resources"]
    plain = new_template("probe")
    storage.add_key(plain, "prod")
    before = plain.to_dict()["Resources"]["InstanceKey"]["Properties"]["KeyPolicy"]
    after = props(storage.build(cfg, "prod").to_dict(), "InstanceKey")["KeyPolicy"]["Statement"]
    count = len(before["Statement"])
    assert after[:count] == before["Statement"]
    added = after[count:]
    assert len(added) == 2
    for statement in added:
        # "*" only because the role may not exist yet; the condition narrows it to that one role.
        assert statement["Principal"] == {"AWS": "*"}
        assert statement["Condition"]["ArnEquals"] == {"aws:PrincipalArn": {"Fn::Sub": SLR}}
    grant = next(s for s in added if s["Action"] == ["kms:CreateGrant"])
    assert grant["Condition"]["Bool"] == {"kms:GrantIsForAWSResource": True}
    assert not any(a in ("kms:*", "*") for s in added for a in s["Action"])


def test_fargate_instances_have_no_ec2_capacity(cfg):
    with pytest.raises(ValueError, match="Fargate"):
        build_capacity(cfg, "dev")
