"""Stack deletion that finishes on EC2 capacity: a custom resource lifts the group's scale-in protection first.

ECS managed termination protection marks the group's instances ProtectedFromScaleIn, and the mark outlives the
capacity provider (aws/containers-roadmap#2862). CloudFormation deletes a group by scaling it to zero and waiting,
which protected instances never allow ("Could not scale to desired capacity because all remaining instances are
protected from scale-in", aws-samples/aws-fault-injection-simulator-workshop#114; aws/aws-cdk#18179). The handler,
lambda_src/asg_release/handler.py, is inlined like the welcome e-mail's; on Delete it lifts the protection of every
protected instance. CloudFormation deletes it after the RStudio services, which DependsOn it (so no task still needs
the protection), and before the group, which it refers to. The orchestrator's role in instance accounts only reads,
so the stack itself must do this.
"""

from __future__ import annotations

from pathlib import Path

import awacs.autoscaling
import awacs.logs
import awacs.sts
from awacs.aws import Principal
from troposphere import GetAtt, Parameter, Ref, Sub, Template
from troposphere.autoscaling import AutoScalingGroup
from troposphere.awslambda import Code, Function
from troposphere.cloudformation import CustomResource
from troposphere.iam import Policy as RolePolicy
from troposphere.iam import Role
from troposphere.logs import LogGroup

from generator.common import skip_checkov
from generator.iam import Allow, Statement, document
from generator.instance.inline import RESPONSE_TIMEOUT_SECONDS, FunctionLoggingConfig, inline_code
from generator.instance.tasks import add_log_group
from stacksets.config import Config

HANDLER = Path(__file__).resolve().parents[2] / "lambda_src" / "asg_release" / "handler.py"
# Auto Scaling's resource type for a group: its ARN carries a generated id before the name.
GROUP_ARN = "arn:${AWS::Partition}:autoscaling:${AWS::Region}:${AWS::AccountId}:autoScalingGroup:*:" \
            "autoScalingGroupName/${Group}"


class AsgRelease(CustomResource):
    resource_type = "Custom::AsgRelease"


def add_asg_release(t: Template, cfg: Config, instance: str, asg: AutoScalingGroup, key: Parameter) -> AsgRelease:
    log_group = add_log_group(t, "AsgReleaseLogGroup", f"/rstudio/{instance}/asg-release", key,
                              cfg.instances[instance].logs.retention_days)  # fmt: skip
    role = add_release_role(t, asg, log_group)
    function = t.add_resource(Function(
        "AsgReleaseFunction", Description=f"Lifts scale-in protection from RStudio instance {instance}'s EC2 "
                                          "capacity before CloudFormation deletes the group",
        Runtime="python3.12", Architectures=["arm64"], Handler="index.handler", Code=Code(ZipFile=inline_code(HANDLER)),
        Role=GetAtt(role, "Arn"), Timeout=120, MemorySize=128,
        LoggingConfig=FunctionLoggingConfig(LogFormat="JSON", LogGroup=Ref(log_group), ApplicationLogLevel="INFO",
                                            SystemLogLevel="WARN"),
    ))  # fmt: skip
    skip_checkov(
        function,
        CKV_AWS_115="runs once per stack deletion; reserving concurrency would only take from the account's pool",
        CKV_AWS_116="CloudFormation invokes it and the handler answers every request itself, FAILED on any error; a "
        "lost invocation fails the resource after ServiceTimeout, which a queue would not improve",
        CKV_AWS_117="talks only to the Auto Scaling API; a VPC would add ENIs and endpoints for no gain",
    )
    return t.add_resource(AsgRelease("AsgRelease", ServiceToken=GetAtt(function, "Arn"),
                                     ServiceTimeout=RESPONSE_TIMEOUT_SECONDS, AutoScalingGroupName=Ref(asg)))


def add_release_role(t: Template, asg: AutoScalingGroup, log_group: LogGroup) -> Role:
    statements = document(
        Statement(Sid="LiftProtectionOfTheGroup", Effect=Allow, Action=[awacs.autoscaling.SetInstanceProtection],
                  Resource=[Sub(GROUP_ARN, Group=Ref(asg))]),
        # DescribeAutoScalingGroups has no resource-level permissions: IAM accepts only "*" for it.
        Statement(Sid="FindTheGroupsInstances", Effect=Allow, Action=[awacs.autoscaling.DescribeAutoScalingGroups],
                  Resource=["*"]),
        Statement(Sid="WriteOwnLogs", Effect=Allow, Action=[awacs.logs.CreateLogStream, awacs.logs.PutLogEvents],
                  Resource=[Sub("${Group}:*", Group=GetAtt(log_group, "Arn"))]),
    )  # fmt: skip
    # No aws:SourceArn/SourceAccount condition, for the reason the welcome e-mail's role gives (generator/instance/
    # welcome.py): Lambda does not document setting them when it assumes an execution role.
    trust = document(Statement(Effect=Allow, Principal=Principal("Service", "lambda.amazonaws.com"),
                               Action=[awacs.sts.AssumeRole]))  # fmt: skip
    return t.add_resource(Role("AsgReleaseRole", AssumeRolePolicyDocument=trust,
                               Description="Lifts scale-in protection from the RStudio EC2 capacity group's instances",
                               Policies=[RolePolicy(PolicyName="asg-release", PolicyDocument=statements)]))
