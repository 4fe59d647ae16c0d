"""The optional SSH bastion: one Fargate task with a public IP, reachable on port 22 from the configured CIDRs only.

ECS Exec is the default admin path; the bastion is for teams that need plain SSH. It is the only task of the instance
with a public IP: the ALB cannot carry SSH, and a public IP in a public subnet costs less than a network load
balancer. Security groups (security_groups.py) let SSH in from `bastion.allowed_cidrs` only and let the bastion on to
port 22 of the RStudio and Shiny tasks, which accept SSH from nothing else.

The admin's public key lives in the Secrets Manager secret `rstudio/<instance>/bastion/ssh-public-key`, so replacing
it needs no deployment. CloudFormation cannot fill the secret without the key appearing in the template, so the storage
StackSet (generator/stacks/storage.py, kept across a rebuild of the instance) creates it holding a random placeholder,
and the platform team puts the real key in once:

    aws secretsmanager put-secret-value --secret-id rstudio/<instance>/bastion/ssh-public-key \
        --secret-string "$(cat ~/.ssh/id_ed25519.pub)"
    aws ecs update-service --cluster rstudio-<instance> --service <bastion service> --force-new-deployment

ECS injects secrets only when a task starts, hence the second command (also after every key change). The same key
opens the second hop, the sshd of every RStudio and Shiny task (generator/instance/ssh.py): force a new deployment of
those services as well (an RStudio restart ends the running R sessions; homes stay). CloudFormation
names the service: `aws ecs list-services --cluster rstudio-<instance>` shows it (its name contains BastionService).
Later stack updates leave the value alone as long as the secret's GenerateSecretString is not edited.

Finding the bastion: its public IP changes with every task. `aws ecs list-tasks --cluster rstudio-<instance> --family
rstudio-<instance>-bastion` gives the task; `aws ecs describe-tasks` its network interface id (attachment detail
networkInterfaceId); `aws ec2 describe-network-interfaces` that interface's Association.PublicIp. The ECS console
shows the same IP on the task's page, and `python deploy.py connect <instance> <server> --ssh` (stacksets/connect.py)
prints the whole jump command.

Container contract (the image comes from the central `bastion` repository, issue 6): one container named "bastion",
sshd on port 22, key-only login for user "admin" (no passwords, no root login), the authorized key taken from the
SSH_PUBLIC_KEY environment variable at start. While that value is not an OpenSSH public key (the placeholder), the
start script logs an error naming the secret and runs sshd with no authorized key: nobody can log in, but the task
stays up, because a task that exits keeps the ECS service from stabilising and so fails the whole stack deployment.
"""

from __future__ import annotations

from typing import NamedTuple

from troposphere import AWSHelperFn, GetAtt, Parameter, Ref, Template
from troposphere.ec2 import SecurityGroup
from troposphere.ecs import (
    AwsvpcConfiguration,
    ContainerDefinition,
    DeploymentCircuitBreaker,
    DeploymentConfiguration,
    DeploymentController,
    LinuxParameters,
    NetworkConfiguration,
    PortMapping,
    RuntimePlatform,
    Service,
    TaskDefinition,
)
from troposphere.ecs import Secret as ContainerSecret
from troposphere.iam import Role
from troposphere.logs import LogGroup

from generator.instance.cluster import ClusterParts
from generator.instance.network import Network
from generator.instance.security_groups import SSH_PORT, SecurityGroups
from generator.instance.tasks import (
    FARGATE_PLATFORM_VERSION,
    add_exec_task_role,
    add_execution_role,
    add_log_group,
    awslogs,
    image,
)
from generator.naming import task_family
from stacksets.config import Config

BASTION_CONTAINER = "bastion"


class Bastion(NamedTuple):
    secret: AWSHelperFn
    task_definition: TaskDefinition
    service: Service
    task_role: Role


def ssh_key_secret_name(instance: str) -> str:
    return f"rstudio/{instance}/bastion/ssh-public-key"


def add_bastion(t: Template, cfg: Config, instance: str, network: Network, groups: SecurityGroups,
                cluster_parts: ClusterParts, key: Parameter, key_secret: AWSHelperFn | None, *,
                image_tag: str) -> Bastion | None:  # fmt: skip
    """`key_secret`: the ARN of the admin's SSH public key secret, kept in the storage StackSet."""
    settings = cfg.instances[instance]
    if not settings.bastion.enabled or groups.bastion is None or key_secret is None:
        return None
    secret = key_secret
    log_group = add_log_group(t, "BastionLogGroup", f"/rstudio/{instance}/bastion", key, settings.logs.retention_days)
    execution_role = add_execution_role(t, "BastionExecutionRole", cfg, "bastion", log_group, key, secrets=[secret])
    task_role = add_exec_task_role(t, "BastionTaskRole", f"SSH bastion of RStudio instance {instance}: ECS Exec only",
                                   cluster_parts.exec_log_group, key)  # fmt: skip
    task_definition = add_bastion_task_definition(t, cfg, instance, secret, log_group, execution_role, task_role,
                                                  image_tag=image_tag)  # fmt: skip
    service = add_bastion_service(t, network, groups.bastion, cluster_parts, task_definition)
    return Bastion(secret, task_definition, service, task_role)


def add_bastion_task_definition(t: Template, cfg: Config, instance: str, secret: AWSHelperFn, log_group: LogGroup,
                                execution_role: Role, task_role: Role, *,
                                image_tag: str) -> TaskDefinition:  # fmt: skip
    container = ContainerDefinition(
        Name=BASTION_CONTAINER, Image=image(cfg, "bastion", image_tag), Essential=True,
        PortMappings=[PortMapping(ContainerPort=SSH_PORT, Protocol="tcp")],
        Secrets=[ContainerSecret(Name="SSH_PUBLIC_KEY", ValueFrom=secret)],
        LinuxParameters=LinuxParameters(InitProcessEnabled=True),
        # sshd writes host keys and its pid file at start, ECS Exec needs a writable root, Fargate has no tmpfs.
        ReadonlyRootFilesystem=False,
        LogConfiguration=awslogs(log_group, "bastion"),
    )  # fmt: skip
    return t.add_resource(TaskDefinition(
        "BastionTaskDefinition", Family=task_family(instance, "bastion"), Cpu="256", Memory="512",
        NetworkMode="awsvpc", RequiresCompatibilities=["FARGATE"],
        RuntimePlatform=RuntimePlatform(OperatingSystemFamily="LINUX", CpuArchitecture="X86_64"),
        ExecutionRoleArn=GetAtt(execution_role, "Arn"), TaskRoleArn=GetAtt(task_role, "Arn"),
        ContainerDefinitions=[container],
    ))  # fmt: skip


def add_bastion_service(t: Template, network: Network, security_group: SecurityGroup, cluster_parts: ClusterParts,
                        task_definition: TaskDefinition) -> Service:  # fmt: skip
    # The only public IP of the instance's tasks: this is the SSH entry point, and its security group admits only
    # bastion.allowed_cidrs on port 22.
    return t.add_resource(Service(
        "BastionService", Cluster=Ref(cluster_parts.cluster), TaskDefinition=Ref(task_definition), DesiredCount=1,
        LaunchType="FARGATE", PlatformVersion=FARGATE_PLATFORM_VERSION,
        NetworkConfiguration=NetworkConfiguration(AwsvpcConfiguration=AwsvpcConfiguration(
            Subnets=[Ref(subnet) for subnet in network.public_subnets],
            SecurityGroups=[GetAtt(security_group, "GroupId")], AssignPublicIp="ENABLED")),
        # The replacement task is up before the old one stops, so SSH stays available through a deployment.
        DeploymentController=DeploymentController(Type="ECS"),
        DeploymentConfiguration=DeploymentConfiguration(
            MinimumHealthyPercent=100, MaximumPercent=200,
            DeploymentCircuitBreaker=DeploymentCircuitBreaker(Enable=True, Rollback=True)),
        EnableExecuteCommand=True, EnableECSManagedTags=True, PropagateTags="SERVICE",
    ))  # fmt: skip
