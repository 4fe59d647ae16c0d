"""EC2 capacity for RStudio (launch_type ec2): more memory per server than Fargate offers, through a capacity provider.

ECS managed scaling sizes the Auto Scaling group to what the RStudio tasks reserve (target 100 %: no idle instance),
and managed termination protection keeps scale-in from terminating an instance that still runs an R session. The
instances run the ECS-optimized Amazon Linux 2023 AMI named by AWS's public SSM parameter, resolved at each stack
update: a new AMI reaches instances launched afterwards, never a running one (no rolling update kills sessions).

Instances are plain container hosts. Admins reach them through SSM Session Manager (no SSH keys, no inbound rule),
IMDSv2 is required with a hop limit of 1, and ECS_AWSVPC_BLOCK_IMDS keeps awsvpc tasks (whose R sessions every user
controls) away from the instance role's credentials. They get their own security group with HTTPS egress only (ECS,
ECR, SSM and S3 endpoints): task traffic uses the tasks' own network interfaces and the RStudio group, so the ALB and
the bastion never reach the hosts. Root volumes are encrypted with the instance key, which therefore grants the Auto
Scaling service-linked role its use (see grant_key_to_auto_scaling).

ECS never lifts the scale-in protection of an instance once the capacity provider is gone, so CloudFormation could
not delete the group: a custom resource lifts it on the way (generator/instance/asg_release.py), and the RStudio
services depend on it so that they are deleted before it runs.
"""

from __future__ import annotations

from typing import NamedTuple

import awacs.sts
from awacs.aws import ArnEquals, Bool, Condition, Principal
from troposphere import Base64, GetAtt, Parameter, Ref, Sub, Tags, Template
from troposphere.autoscaling import AutoScalingGroup, LaunchTemplateSpecification
from troposphere.autoscaling import Tags as AsgTags
from troposphere.ec2 import (
    EBSBlockDevice,
    IamInstanceProfile,
    LaunchTemplate,
    LaunchTemplateBlockDeviceMapping,
    LaunchTemplateData,
    MetadataOptions,
    NetworkInterfaces,
    SecurityGroup,
    TagSpecifications,
)
from troposphere.ecs import (
    AutoScalingGroupProvider,
    CapacityProvider,
    CapacityProviderStrategy,
    ManagedScaling,
)
from troposphere.ecs import ClusterCapacityProviderAssociations as Associations
from troposphere.iam import InstanceProfile, Role
from troposphere.kms import Key

from generator.common import skip_checkov
from generator.iam import Allow, Statement, arn, conditions, document, kms_actions
from generator.instance.asg_release import AsgRelease, add_asg_release
from generator.instance.cluster import ClusterParts
from generator.instance.network import Network
from generator.instance.security_groups import HTTPS_PORT
from generator.instance.servers import rstudio_servers
from stacksets.config import Config

ECS_AMI_PARAMETER = "/aws/service/ecs/optimized-ami/amazon-linux-2023/recommended/image_id"
# Images of several GB, every task's writable layer and R's tempdir share the root volume (the AMI's default is 30).
ROOT_VOLUME_GIB = 100
AUTO_SCALING_ROLE = "aws-service-role/autoscaling.amazonaws.com/AWSServiceRoleForAutoScaling"
USER_DATA = """#!/bin/bash
cat >> /etc/ecs/ecs.config <<'EOF'
ECS_CLUSTER=${Cluster}
ECS_ENABLE_TASK_IAM_ROLE=true
ECS_AWSVPC_BLOCK_IMDS=true
EOF
"""


class Ec2Capacity(NamedTuple):
    capacity_provider: CapacityProvider
    asg: AutoScalingGroup
    launch_template: LaunchTemplate
    instance_role: Role
    associations: Associations
    """Services on the capacity provider depend on it: the cluster only accepts the provider once associated."""
    security_group: SecurityGroup
    release: AsgRelease
    """Services on the capacity provider depend on it too: deleted after them, it lifts what would block the group."""


def add_ec2_capacity(t: Template, cfg: Config, instance: str, network: Network, cluster_parts: ClusterParts,
                     key: Parameter) -> Ec2Capacity:  # fmt: skip
    instance_type = cfg.instances[instance].rstudio.ec2_instance_type
    if instance_type is None:
        raise ValueError(f"instance {instance!r} runs RStudio on Fargate; it has no EC2 capacity")
    group = add_instance_security_group(t, instance, network)
    role, profile = add_instance_role(t, instance)
    template = add_launch_template(t, instance, instance_type, cluster_parts, key, group, profile)
    asg = add_auto_scaling_group(t, instance, network, template, len(rstudio_servers(cfg, instance)) + 1)
    provider, associations = add_capacity_provider(t, cluster_parts, asg)
    release = add_asg_release(t, cfg, instance, asg, key)
    return Ec2Capacity(provider, asg, template, role, associations, group, release)


def add_instance_security_group(t: Template, instance: str, network: Network) -> SecurityGroup:
    return t.add_resource(SecurityGroup(
        "ContainerInstanceSecurityGroup", GroupDescription=f"RStudio instance {instance}: EC2 container instances",
        VpcId=Ref(network.vpc), Tags=Tags(Name=f"rstudio-{instance}-container-instances"),
        SecurityGroupEgress=[{"IpProtocol": "tcp", "FromPort": HTTPS_PORT, "ToPort": HTTPS_PORT,
                              "CidrIp": "0.0.0.0/0", "Description": "ECS, ECR, S3, SSM and CloudWatch endpoints"}],
    ))  # fmt: skip


def add_instance_role(t: Template, instance: str) -> tuple[Role, InstanceProfile]:
    """AWS's managed policies are the documented minimum for an ECS container instance managed through SSM."""
    # No confused-deputy conditions: EC2 assumes an instance profile's role without a source ARN or account.
    trust = document(Statement(Effect=Allow, Principal=Principal("Service", "ec2.amazonaws.com"),
                               Action=[awacs.sts.AssumeRole]))  # fmt: skip
    role = t.add_resource(Role(
        "ContainerInstanceRole", Description=f"EC2 container instances of RStudio instance {instance}",
        AssumeRolePolicyDocument=trust,
        ManagedPolicyArns=[arn("iam", "policy/service-role/AmazonEC2ContainerServiceforEC2Role", account="aws"),
                           arn("iam", "policy/AmazonSSMManagedInstanceCore", account="aws")],
    ))  # fmt: skip
    profile = t.add_resource(InstanceProfile("ContainerInstanceProfile", Roles=[Ref(role)]))
    return role, profile


def add_launch_template(t: Template, instance: str, instance_type: str, cluster_parts: ClusterParts, key: Parameter,
                        group: SecurityGroup, profile: InstanceProfile) -> LaunchTemplate:  # fmt: skip
    ami = t.add_parameter(Parameter(
        "EcsAmiId", Type="AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>", Default=ECS_AMI_PARAMETER,
        Description="ECS-optimized Amazon Linux 2023 AMI (AWS's public parameter; keep the default)",
    ))  # fmt: skip
    volume = EBSBlockDevice(VolumeType="gp3", VolumeSize=ROOT_VOLUME_GIB, Encrypted=True,
                            KmsKeyId=Ref(key), DeleteOnTermination=True)  # fmt: skip
    data = LaunchTemplateData(
        ImageId=Ref(ami), InstanceType=instance_type, EbsOptimized=True,
        IamInstanceProfile=IamInstanceProfile(Arn=GetAtt(profile, "Arn")),
        MetadataOptions=MetadataOptions(HttpEndpoint="enabled", HttpTokens="required", HttpPutResponseHopLimit=1),
        BlockDeviceMappings=[LaunchTemplateBlockDeviceMapping(DeviceName="/dev/xvda", Ebs=volume)],
        NetworkInterfaces=[NetworkInterfaces(DeviceIndex=0, AssociatePublicIpAddress=False,
                                             Groups=[GetAtt(group, "GroupId")], DeleteOnTermination=True)],
        TagSpecifications=[TagSpecifications(ResourceType=kind, Tags=Tags(Name=f"rstudio-{instance}-ecs"))
                           for kind in ("instance", "volume")],
        UserData=Base64(Sub(USER_DATA, Cluster=Ref(cluster_parts.cluster))),
    )  # fmt: skip
    return t.add_resource(LaunchTemplate("ContainerInstanceLaunchTemplate", LaunchTemplateData=data))


def add_auto_scaling_group(t: Template, instance: str, network: Network, template: LaunchTemplate,
                           max_size: int) -> AutoScalingGroup:  # fmt: skip
    """One instance per RStudio server at most, plus one so a replacement can start while an instance drains."""
    return t.add_resource(AutoScalingGroup(
        "ContainerInstanceGroup", MinSize="0", MaxSize=str(max_size), DependsOn=network.egress,
        VPCZoneIdentifier=[Ref(subnet) for subnet in network.private_subnets],
        LaunchTemplate=LaunchTemplateSpecification(LaunchTemplateId=Ref(template),
                                                   Version=GetAtt(template, "LatestVersionNumber")),
        # Managed termination protection needs it; ECS lifts the protection once an instance runs no task.
        NewInstancesProtectedFromScaleIn=True,
        # ECS adds this tag when managed scaling is on; declaring it keeps stack updates from removing it.
        Tags=AsgTags(Name=(f"rstudio-{instance}-ecs", True), AmazonECSManaged=("true", True)),
    ))  # fmt: skip


def add_capacity_provider(t: Template, cluster_parts: ClusterParts,
                          asg: AutoScalingGroup) -> tuple[CapacityProvider, Associations]:  # fmt: skip
    provider = t.add_resource(CapacityProvider(
        "RStudioCapacityProvider",
        AutoScalingGroupProvider=AutoScalingGroupProvider(
            AutoScalingGroupArn=Ref(asg), ManagedTerminationProtection="ENABLED", ManagedDraining="ENABLED",
            ManagedScaling=ManagedScaling(Status="ENABLED", TargetCapacity=100)),
    ))  # fmt: skip
    # This resource replaces the cluster's whole provider list: FARGATE stays in it for Shiny and the bastion, and
    # stays the default for anything that names neither a launch type nor a strategy.
    associations = t.add_resource(Associations(
        "ClusterCapacityProviders", Cluster=Ref(cluster_parts.cluster), CapacityProviders=["FARGATE", Ref(provider)],
        DefaultCapacityProviderStrategy=[CapacityProviderStrategy(CapacityProvider="FARGATE", Weight=1)],
    ))  # fmt: skip
    return provider, associations


def grant_key_to_auto_scaling(key: Key) -> list[Statement]:
    """Adds to the instance key's policy (in the storage StackSet) what Auto Scaling needs to launch instances with
    volumes encrypted by it.

    The service-linked role's own policy covers only AWS managed keys, so the key policy must name it (EC2 Auto
    Scaling user guide, "Required KMS key policy for use with encrypted volumes"). The role exists only once the
    account's first Auto Scaling group does, and a key policy naming a missing principal is rejected, so the
    principal is "*" narrowed by aws:PrincipalArn to exactly that role of this account.
    """
    role = ArnEquals("aws:PrincipalArn", arn("iam", f"role/{AUTO_SCALING_ROLE}", account="${AWS::AccountId}"))
    statements = [
        Statement(Sid="AutoScalingUsesKeyForVolumes", Effect=Allow, Principal=Principal("AWS", "*"), Resource=["*"],
                  Action=kms_actions(("Encrypt", "Decrypt", "ReEncrypt*", "GenerateDataKey*", "DescribeKey")),
                  Condition=Condition(role)),
        Statement(Sid="AutoScalingGrantsKeyToEc2", Effect=Allow, Principal=Principal("AWS", "*"), Resource=["*"],
                  Action=kms_actions(("CreateGrant",)),
                  Condition=conditions(role, Bool("kms:GrantIsForAWSResource", True))),
    ]  # fmt: skip
    key.KeyPolicy.Statement.extend(statements)
    skip_checkov(key, CKV_AWS_33="principal * is narrowed by aws:PrincipalArn to this account's Auto Scaling "
                 "service-linked role, which may not exist yet when the key policy is written")  # fmt: skip
    return statements
