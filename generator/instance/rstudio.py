"""The RStudio services: one ECS service with exactly one task per RStudio server, each at its own host name.

Open-source RStudio is single-node and keeps its users' state in their homes, so each service runs one task and a
deployment stops the old task before starting the new one (minimum healthy 0 %, maximum 100 %): two rservers never
share a home. A failed deployment rolls back by itself. ECS Exec is the admin path; each server's task role (one per
server in per-user mode, generator/stacks/instance.py) gains only the ECS Exec rights and its EFS mounts
(storage.py), as separate policies, because every R session on the server can use that role. Each server has its own
log group and its own execution role, which can read only that server's secrets, so a task can never start with
another user's password.

Container contract (the image comes from the central `rstudio` repository, issue 6):
- One container named "rstudio", started with the image's own `/init` (rocker: s6-overlay v2, run as root), listening
  on 8787; the ALB health check requests `/` and accepts 200 or 302 (open-source RStudio has no health endpoint).
- Environment:
  - RSTUDIO_USERS: the Linux users to create, "name:uid" pairs separated by single spaces, sorted by name, e.g.
    "alice:3001" (per-user server) or "dana:2001 erik:2002 rstudio:1000" (shared server; "rstudio" is the admin
    user, uid 1000). Each user's primary group has the same number as the uid. Homes are /home/<name>.
  - AWS_DEFAULT_REGION: the instance's region. ATHENA_WORKGROUP, ATHENA_ROLE_ARN (the data account's role the task
    role may assume; sessions may set a source identity) and ATHENA_REGION (where the workgroup lives).
- Secrets (ECS `secrets`, injected as environment variables at container start, values letters and digits only):
  - PASSWORD_<USER> for each user in RSTUDIO_USERS and no other: the name upper-cased with "-" turned into "_"
    (PASSWORD_ALICE); its value is that user's login password.
  - SECURE_COOKIE_KEY: this server's key; write it to a root-only file (0600) named by rserver.conf's
    secure-cookie-key-file, so logins survive restarts.
  - SSH_PUBLIC_KEY, only when the instance has a bastion: the bastion key secret; the image's sshd on 22 admits the
    platform team's admin with it (ssh.py), and runs not at all without the variable.
  The image must consume PASSWORD_* and SECURE_COOKIE_KEY before rocker's 01_set_env runs and remove them from the
  container environment (s6's /var/run/s6/container_environment): 01_set_env copies every variable except PASSWORD
  into Renviron.site, which every R user can read.
- EFS mounts (storage.py has the UID/GID design): a per-user server gets only its user's home at /home/<user>,
  created by EFS as uid:uid 0700; the shared server gets /home, keeps it root:root 0755 at start (EFS may have
  created it for per-user homes, owned by a user) and creates each missing /home/<name> as uid:uid 0700. Homes that
  exist are never chowned recursively (slow on EFS, and their owners are already right).
  /srv/shiny-server (read-write) is the shared app folder, root:shiny-apps 3775: the image creates group "shiny-apps"
  with GID 1999 and adds every user of RSTUDIO_USERS to it. /s3_data_sync/hourly_sync and
  /s3_data_sync/instant_upload are read-only. rserver's own state (/var/lib/rstudio-server, a SQLite database) stays
  off EFS. Users get no sudo: root in a shared server's task could mount every user's home with its task role.
- Stops get SIGTERM and 120 s (the Fargate maximum) so rserver can suspend sessions; an init process runs as PID 1
  for ECS Exec, which s6-overlay v2 tolerates (v3 would not start). The root filesystem stays writable: rocker's init
  writes /etc/passwd, Renviron.site and rserver.conf at start, and ECS Exec needs it.
"""

from __future__ import annotations

from typing import NamedTuple

from troposphere import AWSHelperFn, GetAtt, Parameter, Ref, Tags, Template
from troposphere.ecs import (
    AwsvpcConfiguration,
    CapacityProviderStrategyItem,
    ContainerDefinition,
    DeploymentCircuitBreaker,
    DeploymentConfiguration,
    DeploymentController,
    Environment,
    LinuxParameters,
    LoadBalancer,
    NetworkConfiguration,
    PlacementStrategy,
    PortMapping,
    RuntimePlatform,
    Service,
    TaskDefinition,
    Ulimit,
)
from troposphere.ecs import Secret as ContainerSecret
from troposphere.elasticloadbalancingv2 import ListenerRule, TargetGroup
from troposphere.iam import PolicyType, Role
from troposphere.logs import LogGroup

from generator import naming
from generator.iam import document, role_arn
from generator.instance.capacity import Ec2Capacity
from generator.instance.cluster import ClusterParts
from generator.instance.network import Network
from generator.instance.secrets import RStudioSecrets
from generator.instance.security_groups import RSTUDIO_PORT, SSH_PORT, SecurityGroups
from generator.instance.servers import SHARED_ADMIN_USER, RStudioServer, rstudio_servers
from generator.instance.ssh import ssh_secret
from generator.instance.storage import Storage, mount_dependencies, rstudio_grant, rstudio_mounts, task_volumes
from generator.instance.tasks import (
    FARGATE_PLATFORM_VERSION,
    add_execution_role,
    add_log_group,
    awslogs,
    ecs_exec_statements,
    image,
)
from stacksets.config import Config, LaunchType, server_size

SHARED_ADMIN_UID = 1000
RSTUDIO_CONTAINER = "rstudio"  # the container contract above; `deploy.py connect` opens its shell in it
STOP_TIMEOUT_SECONDS = 120
# The instance's Athena settings; the image hands them on to every R session (container/rstudio).
ATHENA_VARIABLES = ("ATHENA_REGION", "ATHENA_ROLE_ARN", "ATHENA_WORKGROUP")
OPEN_FILES = 65536


class RStudioService(NamedTuple):
    service: Service
    task_definition: TaskDefinition
    execution_role: Role
    log_group: LogGroup


def add_rstudio(t: Template, cfg: Config, instance: str, network: Network, groups: SecurityGroups,
                cluster_parts: ClusterParts, key: Parameter, task_roles: dict[str, Role], secrets: RStudioSecrets,
                target_groups: dict[str, TargetGroup], rules: dict[str, ListenerRule],
                capacity: Ec2Capacity | None, storage: Storage | None = None, *, image_tag: str,
                ssh_key: AWSHelperFn | None = None) -> dict[str, RStudioService]:  # fmt: skip
    """One service per RStudio server, keyed like the target groups, rules and `task_roles` by RStudioServer.key.
    `ssh_key`: the bastion key secret's ARN when the instance has a bastion; each server's sshd then admits the
    platform team with that key (generator/instance/ssh.py)."""
    on_ec2 = cfg.instances[instance].rstudio.launch_type is LaunchType.ec2
    if on_ec2 != (capacity is not None):
        raise ValueError(f"instance {instance!r}: EC2 capacity must be given exactly when launch_type is ec2")
    retention = cfg.instances[instance].logs.retention_days
    exec_policy = add_rstudio_exec_policy(t, cluster_parts, key, list(task_roles.values()))
    services = {}
    for server in rstudio_servers(cfg, instance):
        own = server_secrets(server, secrets, ssh_key)
        log_group = add_log_group(t, server.id("LogGroup"), f"/rstudio/{instance}/{server.name}", key, retention)
        execution_role = add_execution_role(t, server.id("ExecutionRole"), cfg, "rstudio", log_group, key,
                                            list(own.values()))  # fmt: skip
        definition = add_rstudio_task_definition(t, cfg, instance, server, log_group, execution_role,
                                                 task_roles[server.key], own, storage, image_tag=image_tag)  # fmt: skip
        depends_on = [rules[server.key].title, exec_policy.title, *network.egress]
        depends_on += [capacity.associations.title, capacity.release.title] if capacity else []
        depends_on += mount_dependencies(storage, rstudio_grant(server)) if storage else []
        service = add_rstudio_service(t, cfg, instance, server, network, groups, cluster_parts, definition,
                                      target_groups[server.key], capacity, depends_on)  # fmt: skip
        services[server.key] = RStudioService(service, definition, execution_role, log_group)
    return services


def add_rstudio_exec_policy(t: Template, cluster_parts: ClusterParts, key: Parameter,
                            task_roles: list[Role]) -> PolicyType:  # fmt: skip
    """ECS Exec rights for every RStudio task role, kept apart from the policies the data account's contract pins."""
    return t.add_resource(PolicyType(
        "RStudioTaskRoleEcsExecPolicy", PolicyName="ecs-exec", Roles=[Ref(role) for role in task_roles],
        PolicyDocument=document(*ecs_exec_statements(cluster_parts.exec_log_group, key)),
    ))  # fmt: skip


def password_variable(user: str) -> str:
    return "PASSWORD_" + user.upper().replace("-", "_")


def server_secrets(server: RStudioServer, secrets: RStudioSecrets,
                   ssh_key: AWSHelperFn | None = None) -> dict[str, AWSHelperFn]:  # fmt: skip
    """Container variable -> secret, for exactly this server's users, its own cookie key and the bastion's key."""
    own = {password_variable(user): secrets.passwords[user] for user in server.users}
    return {**own, "SECURE_COOKIE_KEY": secrets.cookie_keys[server.key], **ssh_secret(ssh_key)}


def rstudio_users(cfg: Config, instance: str, server: RStudioServer) -> str:
    users = cfg.instances[instance].users
    uids = {user: SHARED_ADMIN_UID if user == SHARED_ADMIN_USER else users[user].uid for user in server.users}
    return " ".join(f"{user}:{uid}" for user, uid in sorted(uids.items()))


def container_environment(cfg: Config, instance: str, server: RStudioServer) -> list[Environment]:
    athena_role = role_arn(cfg.accounts.data, naming.role_name(instance, naming.ATHENA_ROLE))
    values = {
        "ATHENA_REGION": cfg.default_region,  # the data StackSet deploys to the default region
        "ATHENA_ROLE_ARN": athena_role,
        "ATHENA_WORKGROUP": naming.athena_workgroup_name(instance),
        "AWS_DEFAULT_REGION": Ref("AWS::Region"),
        "RSTUDIO_USERS": rstudio_users(cfg, instance, server),
    }
    return [Environment(Name=name, Value=value) for name, value in sorted(values.items())]


def add_rstudio_task_definition(t: Template, cfg: Config, instance: str, server: RStudioServer, log_group: LogGroup,
                                execution_role: Role, task_role: Role,
                                own: dict[str, AWSHelperFn], storage: Storage | None = None, *,
                                image_tag: str) -> TaskDefinition:  # fmt: skip
    settings = cfg.instances[instance].rstudio
    cpu, memory = server_size(cfg.instances[instance], None if server.key == "shared" else server.key)
    volumes, mount_points = task_volumes(storage, rstudio_mounts(server)) if storage else ([], [])
    container = ContainerDefinition(
        Name=RSTUDIO_CONTAINER, Image=image(cfg, "rstudio", image_tag), Essential=True,
        # awsvpc: the security group alone decides who reaches sshd (the bastion); the mapping declares the port, as
        # ECS asks of every port a container exposes in awsvpc mode.
        PortMappings=[PortMapping(ContainerPort=port, Protocol="tcp")
                      for port in (RSTUDIO_PORT, *([SSH_PORT] if "SSH_PUBLIC_KEY" in own else []))],
        Environment=container_environment(cfg, instance, server),
        Secrets=[ContainerSecret(Name=name, ValueFrom=secret) for name, secret in sorted(own.items())],
        LinuxParameters=LinuxParameters(InitProcessEnabled=True), ReadonlyRootFilesystem=False,
        StopTimeout=STOP_TIMEOUT_SECONDS,
        Ulimits=[Ulimit(Name="nofile", SoftLimit=OPEN_FILES, HardLimit=OPEN_FILES)],
        LogConfiguration=awslogs(log_group, "rstudio"), **({"MountPoints": mount_points} if storage else {}),
    )  # fmt: skip
    fargate = settings.launch_type is LaunchType.fargate
    platform = {"RuntimePlatform": RuntimePlatform(OperatingSystemFamily="LINUX", CpuArchitecture="X86_64")}
    definition = TaskDefinition(
        server.id("TaskDefinition"), Family=naming.task_family(instance, server.name), NetworkMode="awsvpc",
        Cpu=str(cpu), Memory=str(memory), RequiresCompatibilities=["FARGATE" if fargate else "EC2"],
        ExecutionRoleArn=GetAtt(execution_role, "Arn"), TaskRoleArn=GetAtt(task_role, "Arn"),
        ContainerDefinitions=[container], **(platform if fargate else {}), **({"Volumes": volumes} if storage else {}),
    )  # fmt: skip
    return t.add_resource(definition)


def add_rstudio_service(t: Template, cfg: Config, instance: str, server: RStudioServer, network: Network,
                        groups: SecurityGroups, cluster_parts: ClusterParts, definition: TaskDefinition,
                        target_group: TargetGroup, capacity: Ec2Capacity | None,
                        depends_on: list[str]) -> Service:  # fmt: skip
    # On EC2, binpacking on memory fills an instance before managed scaling adds the next one.
    placement = {"LaunchType": "FARGATE", "PlatformVersion": FARGATE_PLATFORM_VERSION} if capacity is None else {
        "CapacityProviderStrategy": [CapacityProviderStrategyItem(CapacityProvider=Ref(capacity.capacity_provider),
                                                                  Weight=1)],
        "PlacementStrategies": [PlacementStrategy(Type="binpack", Field="memory")]}  # fmt: skip
    return t.add_resource(Service(
        server.id("Service"), Cluster=Ref(cluster_parts.cluster), TaskDefinition=Ref(definition), DesiredCount=1,
        NetworkConfiguration=NetworkConfiguration(AwsvpcConfiguration=AwsvpcConfiguration(
            Subnets=[Ref(subnet) for subnet in network.private_subnets],
            SecurityGroups=[GetAtt(groups.rstudio, "GroupId")], AssignPublicIp="DISABLED")),
        LoadBalancers=[LoadBalancer(ContainerName=RSTUDIO_CONTAINER, ContainerPort=RSTUDIO_PORT,
                                    TargetGroupArn=Ref(target_group))],
        HealthCheckGracePeriodSeconds=cfg.instances[instance].rstudio.health_check_grace_seconds,
        DeploymentController=DeploymentController(Type="ECS"),
        DeploymentConfiguration=DeploymentConfiguration(
            MinimumHealthyPercent=0, MaximumPercent=100,
            DeploymentCircuitBreaker=DeploymentCircuitBreaker(Enable=True, Rollback=True)),
        EnableExecuteCommand=True, EnableECSManagedTags=True, PropagateTags="SERVICE",
        Tags=Tags({"rstudio:instance": instance, "rstudio:host": server.host}),
        # A target group must belong to a load balancer before a service can register into it; the exec policy must
        # exist before the first task's agent asks for a channel; an EC2 provider must be associated with the cluster;
        # EFS mounts need the task role's grant and the mount targets.
        DependsOn=depends_on, **placement,
    ))  # fmt: skip
