"""The Shiny service: N stateless Fargate tasks behind the ALB, autoscaled on CPU, memory and requests per task.

Container contract (the image comes from the central `shiny` repository, issue 6): one container named "shiny",
listening on 3838, serving the apps under /srv/shiny-server, answering GET /ping with 200 (the ALB health check), and
writing app stderr to its own stderr (SHINY_LOG_STDERR=1, Shiny Server 1.5.13+) so it reaches CloudWatch. It keeps no
state a replacement task would need: an app session lives in one R process, which is why the ALB (ingress) pins each
browser to one task with a cookie, and why deployments may roll task by task without downtime. With a bastion the
container also gets the bastion key secret as SSH_PUBLIC_KEY and runs the platform team's sshd on 22 (ssh.py);
without one it gets no secret at all.

EFS (storage.py): the shared app folder is mounted read-only at /srv/shiny-server, so a published app cannot change
itself or another app; apps write to their session's temp directory or under /home/shiny. The image gives the user
"shiny" uid and gid 999 and makes it a member of group "shiny-apps" (GID 1999), which owns everything RStudio users
save in the app folder. /home/shiny (read-write, shiny 0750) is shared by all replicas: Shiny Server's
bookmark_state_dir is /home/shiny/bookmarks, so a bookmark made on one replica restores on any other.

Shiny apps get no AWS data access: the task role only carries what ECS Exec and the EFS mounts need. An app that must
read data deliberately gets its own grant later, instead of every published app inheriting what RStudio users may do.

Tasks run in the private subnets of every AZ; ECS spreads a Fargate service's tasks across the subnets' AZs on its
own (no placement strategy exists or is needed on Fargate), and AZ rebalancing moves them back after an AZ outage.
Three target-tracking policies share one scalable target: Application Auto Scaling scales out when any of them asks
and scales in only when all agree, so the busiest dimension wins. The service names no DesiredCount, so the count
is the scalable target's alone: CloudFormation sets DesiredCount on every update that names it (resetting what
the policies chose), leaves it as it is when the template does not, and a new service starts 1 task, which
registering the scalable target raises to autoscaling.min at once (RegisterScalableTarget moves a resource's
current capacity into its range). `replicas` therefore shapes no template.
"""

from __future__ import annotations

from typing import NamedTuple

from troposphere import AWSHelperFn, GetAtt, Parameter, Ref, Sub, Template
from troposphere.applicationautoscaling import (
    PredefinedMetricSpecification,
    ScalableTarget,
    ScalingPolicy,
    TargetTrackingScalingPolicyConfiguration,
)
from troposphere.ecs import (
    AwsvpcConfiguration,
    ContainerDefinition,
    DeploymentCircuitBreaker,
    DeploymentConfiguration,
    DeploymentController,
    Environment,
    LinuxParameters,
    LoadBalancer,
    NetworkConfiguration,
    PortMapping,
    RuntimePlatform,
    Service,
    TaskDefinition,
)
from troposphere.ecs import Secret as ContainerSecret
from troposphere.elasticloadbalancingv2 import ListenerRule, TargetGroup
from troposphere.elasticloadbalancingv2 import LoadBalancer as Alb
from troposphere.iam import Role
from troposphere.logs import LogGroup

from generator import naming
from generator.instance.cluster import ClusterParts
from generator.instance.network import Network
from generator.instance.security_groups import SHINY_PORT, SSH_PORT, SecurityGroups
from generator.instance.ssh import ssh_secret
from generator.instance.storage import Storage, mount_dependencies, shiny_mounts, task_volumes
from generator.instance.tasks import (
    FARGATE_PLATFORM_VERSION,
    add_exec_task_role,
    add_execution_role,
    add_log_group,
    awslogs,
    image,
)
from stacksets.config import Config, ShinyAutoscaling

# Shiny Server answers /ping within seconds of starting; apps start on first request, not at boot.
HEALTH_CHECK_GRACE_SECONDS = 60
SHINY_CONTAINER = "shiny"  # `deploy.py connect <instance> shiny` opens its shell in it


class ShinyService(NamedTuple):
    task_definition: TaskDefinition
    service: Service
    task_role: Role
    scalable_target: ScalableTarget
    policies: list[ScalingPolicy]


def add_shiny(t: Template, cfg: Config, instance: str, network: Network, groups: SecurityGroups,
              cluster_parts: ClusterParts, key: Parameter, load_balancer: Alb, target_group: TargetGroup,
              rule: ListenerRule, storage: Storage | None = None,
              task_role: Role | None = None, *, image_tag: str,
              ssh_key: AWSHelperFn | None = None) -> ShinyService:  # fmt: skip
    """`task_role`: from add_shiny_task_role when storage needed the role first; made here when not given.
    `ssh_key`: the bastion key secret's ARN when the instance has a bastion (generator/instance/ssh.py)."""
    settings = cfg.instances[instance]
    log_group = add_log_group(t, "ShinyLogGroup", f"/rstudio/{instance}/shiny", key, settings.logs.retention_days)
    own = ssh_secret(ssh_key)
    execution_role = add_execution_role(t, "ShinyExecutionRole", cfg, "shiny", log_group, key,
                                        secrets=list(own.values()))  # fmt: skip
    task_role = task_role or add_shiny_task_role(t, instance, cluster_parts, key)
    task_definition = add_shiny_task_definition(t, cfg, instance, log_group, execution_role, task_role, storage,
                                                image_tag=image_tag, own=own)  # fmt: skip
    depends_on = [rule.title, *network.egress] + (mount_dependencies(storage, "shiny") if storage else [])
    service = add_shiny_service(t, network, groups, cluster_parts, task_definition, target_group, depends_on)
    target, policies = add_shiny_autoscaling(t, settings.shiny.autoscaling, cluster_parts, service, load_balancer,
                                             target_group)  # fmt: skip
    return ShinyService(task_definition, service, task_role, target, policies)


def add_shiny_task_role(t: Template, instance: str, cluster_parts: ClusterParts, key: Parameter) -> Role:
    """Separate from add_shiny because the storage grants name this role, and the file-system policy (in the storage
    StackSet) names it by its fixed name."""
    return add_exec_task_role(t, "ShinyTaskRole", f"Shiny tasks of instance {instance}: ECS Exec, app folder, no data "
                              "access", cluster_parts.exec_log_group, key,
                              RoleName=naming.role_name(instance, naming.SHINY_TASK_ROLE))  # fmt: skip


def add_shiny_task_definition(t: Template, cfg: Config, instance: str, log_group: LogGroup, execution_role: Role,
                              task_role: Role, storage: Storage | None = None, *, image_tag: str,
                              own: dict[str, AWSHelperFn] | None = None) -> TaskDefinition:  # fmt: skip
    """`own`: container variable -> secret (ssh_secret's, or nothing)."""
    own = own or {}
    shiny = cfg.instances[instance].shiny
    volumes, mount_points = task_volumes(storage, shiny_mounts()) if storage else ([], [])
    container = ContainerDefinition(
        Name=SHINY_CONTAINER, Image=image(cfg, "shiny", image_tag), Essential=True,
        # awsvpc: the security group alone decides who reaches sshd (the bastion); the mapping declares the port, as
        # ECS asks of every port a container exposes in awsvpc mode.
        PortMappings=[PortMapping(ContainerPort=port, Protocol="tcp")
                      for port in (SHINY_PORT, *([SSH_PORT] if "SSH_PUBLIC_KEY" in own else []))],
        Environment=[Environment(Name="SHINY_LOG_STDERR", Value="1")],
        **({"Secrets": [ContainerSecret(Name=name, ValueFrom=secret) for name, secret in sorted(own.items())]}
           if own else {}),
        # An init process reaps the ECS Exec agent's children; rocker's s6-overlay v2 tolerates not being PID 1.
        LinuxParameters=LinuxParameters(InitProcessEnabled=True),
        # ECS Exec (the admin path) needs a writable root filesystem, and Fargate has no tmpfs for Shiny Server's
        # writable directories.
        ReadonlyRootFilesystem=False,
        LogConfiguration=awslogs(log_group, "shiny"), **({"MountPoints": mount_points} if storage else {}),
    )  # fmt: skip
    return t.add_resource(TaskDefinition(
        "ShinyTaskDefinition", Family=naming.task_family(instance, "shiny"), Cpu=str(shiny.cpu),
        Memory=str(shiny.memory),
        NetworkMode="awsvpc", RequiresCompatibilities=["FARGATE"],
        RuntimePlatform=RuntimePlatform(OperatingSystemFamily="LINUX", CpuArchitecture="X86_64"),
        ExecutionRoleArn=GetAtt(execution_role, "Arn"), TaskRoleArn=GetAtt(task_role, "Arn"),
        ContainerDefinitions=[container], **({"Volumes": volumes} if storage else {}),
    ))  # fmt: skip


def add_shiny_service(t: Template, network: Network, groups: SecurityGroups, cluster_parts: ClusterParts,
                      task_definition: TaskDefinition, target_group: TargetGroup,
                      depends_on: list[str]) -> Service:  # fmt: skip
    return t.add_resource(
        Service(
            # No DesiredCount: the scalable target owns the count, and naming one would reset it on every update.
            "ShinyService", Cluster=Ref(cluster_parts.cluster), TaskDefinition=Ref(task_definition),
            LaunchType="FARGATE", PlatformVersion=FARGATE_PLATFORM_VERSION,
            AvailabilityZoneRebalancing="ENABLED",
            NetworkConfiguration=NetworkConfiguration(AwsvpcConfiguration=AwsvpcConfiguration(
                Subnets=[Ref(subnet) for subnet in network.private_subnets],
                SecurityGroups=[GetAtt(groups.shiny, "GroupId")], AssignPublicIp="DISABLED")),
            LoadBalancers=[LoadBalancer(ContainerName=SHINY_CONTAINER, ContainerPort=SHINY_PORT,
                                        TargetGroupArn=Ref(target_group))],
            HealthCheckGracePeriodSeconds=HEALTH_CHECK_GRACE_SECONDS,
            # Replicas share nothing but the app folder: start the new task before stopping an old one.
            DeploymentController=DeploymentController(Type="ECS"),
            DeploymentConfiguration=DeploymentConfiguration(
                MinimumHealthyPercent=100, MaximumPercent=200,
                DeploymentCircuitBreaker=DeploymentCircuitBreaker(Enable=True, Rollback=True)),
            EnableExecuteCommand=True, EnableECSManagedTags=True, PropagateTags="SERVICE",
            # A target group must belong to a load balancer before a service can register into it (the rule), and
            # tasks mount EFS only once the task role's grant and the mount targets exist.
            DependsOn=depends_on,
        )
    )  # fmt: skip


def add_shiny_autoscaling(t: Template, scaling: ShinyAutoscaling, cluster_parts: ClusterParts, service: Service,
                          load_balancer: Alb, target_group: TargetGroup) -> tuple[ScalableTarget, list[ScalingPolicy]]:
    # No RoleARN: Application Auto Scaling then uses its ECS service-linked role, which it creates on first use.
    target = t.add_resource(ScalableTarget(
        "ShinyScalableTarget", ServiceNamespace="ecs", ScalableDimension="ecs:service:DesiredCount",
        ResourceId=Sub("service/${Cluster}/${Service}", Cluster=Ref(cluster_parts.cluster),
                       Service=GetAtt(service, "Name")),
        MinCapacity=scaling.min, MaxCapacity=scaling.max,
    ))  # fmt: skip
    # The request metric is per target group of one load balancer: "app/<alb>/<id>/targetgroup/<tg>/<id>".
    requests_label = Sub("${Alb}/${TargetGroup}", Alb=GetAtt(load_balancer, "LoadBalancerFullName"),
                         TargetGroup=GetAtt(target_group, "TargetGroupFullName"))  # fmt: skip
    metrics = [
        ("Cpu", "ECSServiceAverageCPUUtilization", scaling.cpu_target_percent, None),
        ("Memory", "ECSServiceAverageMemoryUtilization", scaling.memory_target_percent, None),
        ("Requests", "ALBRequestCountPerTarget", scaling.requests_per_target, requests_label),
    ]
    policies = []
    for name, metric, value, label in metrics:
        spec = PredefinedMetricSpecification(PredefinedMetricType=metric, **({"ResourceLabel": label} if label else {}))
        policies.append(t.add_resource(ScalingPolicy(
            f"Shiny{name}ScalingPolicy", PolicyName=f"shiny-{name.lower()}", PolicyType="TargetTrackingScaling",
            ScalingTargetId=Ref(target),
            TargetTrackingScalingPolicyConfiguration=TargetTrackingScalingPolicyConfiguration(
                PredefinedMetricSpecification=spec, TargetValue=float(value),
                ScaleInCooldown=scaling.scale_in_cooldown_seconds,
                ScaleOutCooldown=scaling.scale_out_cooldown_seconds),
        )))  # fmt: skip
    return target, policies
