"""`deploy.py connect`: find the running task of one RStudio server (or of Shiny) and say how to get a shell in it.

The cluster, task family and container come from the generator's own naming (generator/naming.py, the server list
of generator/instance/servers.py and the container names of the instance modules), so what connect looks for is what
the templates create: CloudFormation names the services, but the cluster and the families are fixed names. The
tasks are read in the instance account through the reader role (rstudio-bootstrap grants exactly ecs:ListTasks and
ecs:DescribeTasks on the project's clusters and ec2:DescribeNetworkInterfaces, for the bastion's public IP).

Printing is the contract: the command needs credentials of the instance account, which the orchestrator does not
hold (it reads through the reader role, which may not start sessions), so it is the operator who runs it.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from generator.instance.bastion import BASTION_CONTAINER, ssh_key_secret_name
from generator.instance.rstudio import RSTUDIO_CONTAINER
from generator.instance.servers import rstudio_servers
from generator.instance.shiny import SHINY_CONTAINER
from generator.instance.ssh import ADMIN_USER
from generator.naming import cluster_name, task_family
from stacksets import naming
from stacksets.aws import explain
from stacksets.config import Config
from stacksets.errors import UserError

SHINY = "shiny"
PAGE = 100  # ListTasks.maxResults and DescribeTasks.tasks: at most 100 (botocore ecs)
DENIED = ("AccessDenied", "AccessDeniedException", "UnauthorizedOperation")


class ConnectError(UserError):
    """The instance or server does not exist, is not deployed or runs no task: the message says what to do."""


@dataclass(frozen=True)
class Target:
    """Where one server's tasks run, in the names the templates give them."""

    instance: str
    server: str  # "rstudio" (shared mode), the user (per-user mode), "shiny" or "bastion"
    account: str
    region: str
    cluster: str
    family: str
    container: str


@dataclass(frozen=True)
class Task:
    arn: str
    private_ip: str
    network_interface: str


@dataclass(frozen=True)
class Connection:
    command: str  # what to run, for stdout
    notes: list[str]  # what it needs and what else was found, for stderr


def servers(cfg: Config, instance: str) -> dict[str, Target]:
    """The servers `connect` knows of an instance, by the name the operator types: "rstudio" for the shared server,
    each user's name for per-user servers, and "shiny" when Shiny is enabled."""
    settings = _instance(cfg, instance)
    where = (instance, settings.account, cfg.region_of(instance), cluster_name(instance))
    found = {}
    for server in rstudio_servers(cfg, instance):
        name = "rstudio" if server.key == "shared" else server.key
        found[name] = Target(where[0], name, where[1], where[2], where[3], task_family(instance, server.name),
                             RSTUDIO_CONTAINER)  # fmt: skip
    if settings.shiny.enabled:
        found[SHINY] = Target(*where[:1], SHINY, *where[1:], task_family(instance, SHINY), SHINY_CONTAINER)
    return found


def target(cfg: Config, instance: str, server: str | None) -> Target:
    """The server the operator named (or the only RStudio server when they named none)."""
    known = servers(cfg, instance)
    rstudio = [name for name, t in known.items() if t.container == RSTUDIO_CONTAINER]
    listed = ", ".join(known)
    if server is None:
        if len(rstudio) == 1:
            return known[rstudio[0]]
        raise ConnectError(f"instance {instance} runs one RStudio server per user: name one of {listed}")
    if server == SHINY and SHINY not in known:
        raise ConnectError(f"instance {instance} runs no Shiny server (instances.{instance}.shiny.enabled is false): "
                           f"connect to one of {listed}")  # fmt: skip
    if server.startswith("rstudio-") and server[len("rstudio-"):] in rstudio:
        server = server[len("rstudio-"):]  # the server's own name part, as in its family and log group
    if server not in known:
        raise ConnectError(f"instance {instance} has no server '{server}': its servers are {listed}")
    return known[server]


def bastion(cfg: Config, instance: str) -> Target:
    settings = _instance(cfg, instance)
    if not settings.bastion.enabled:
        raise ConnectError(f"--ssh jumps through the instance's SSH bastion, and instance {instance} has none "
                           f"(instances.{instance}.bastion.enabled is false): enable it in the config and deploy, or "
                           "leave out --ssh to open a shell with ECS Exec")  # fmt: skip
    return Target(instance, "bastion", settings.account, cfg.region_of(instance), cluster_name(instance),
                  task_family(instance, "bastion"), BASTION_CONTAINER)  # fmt: skip


def _instance(cfg: Config, instance: str) -> Any:
    if instance not in cfg.instances:
        raise ConnectError(f"unknown instance '{instance}': the config's instances are {', '.join(cfg.instances)}")
    return cfg.instances[instance]


# --- the AWS side: through the reader role in the instance account ---------------------------------------------------


def connect(clients: Any, cfg: Config, instance: str, server: str | None, *, ssh: bool = False) -> Connection:
    """The command that opens a shell in the server's running task: ECS Exec, or SSH through the bastion."""
    wanted = target(cfg, instance, server)
    jump = bastion(cfg, instance) if ssh else None
    tasks = running_tasks(clients, wanted)
    task, notes = tasks[0], []
    if len(tasks) > 1:
        notes.append(f"{len(tasks)} tasks of {wanted.family} are running; this is {task.arn}, the others are "
                     f"{', '.join(t.arn for t in tasks[1:])}")  # fmt: skip
    if jump is None:
        return Connection(exec_command(wanted, task), notes + exec_notes(wanted))
    entry = running_tasks(clients, jump)[0]
    address = public_ip(clients, jump, entry)
    return Connection(ssh_command(address, task.private_ip), notes + ssh_notes(wanted, address))


def running_tasks(clients: Any, where: Target) -> list[Task]:
    """The tasks of the target's family that ECS reports RUNNING, sorted by ARN; at least one, or ConnectError."""
    ecs = clients.reader(where.account, where.region, "ecs")
    arns: list[str] = []
    token = None
    try:
        while True:
            page = ecs.list_tasks(cluster=where.cluster, family=where.family, desiredStatus="RUNNING",
                                  maxResults=PAGE, **({"nextToken": token} if token else {}))  # fmt: skip
            arns += page.get("taskArns", [])
            token = page.get("nextToken")
            if not token:
                break
        described = []
        for start in range(0, len(arns), PAGE):
            described += ecs.describe_tasks(cluster=where.cluster, tasks=arns[start : start + PAGE])["tasks"]
    except ClientError as error:
        raise _worded(error, where) from None
    running = sorted((t for t in described if t.get("lastStatus") == "RUNNING"), key=lambda t: t["taskArn"])
    if not running:
        starting = sorted({str(t.get("lastStatus")) for t in described})
        state = (f"its task is {'/'.join(starting)}, not RUNNING yet: try again in a minute" if starting else
                 "its service runs no task (scaled to 0, or its tasks keep failing to start: `aws ecs describe-"
                 f"services --cluster {where.cluster}` in that account shows the service's events)")  # fmt: skip
        raise ConnectError(f"no running task of {where.server} on instance {where.instance} (family {where.family} "
                           f"in cluster {where.cluster}, account {where.account}, {where.region}): {state}")
    return [_task(t) for t in running]


def _task(described: dict[str, Any]) -> Task:
    details = {d.get("name"): d.get("value") for a in described.get("attachments", [])
               if a.get("type") == "ElasticNetworkInterface" for d in a.get("details", [])}  # fmt: skip
    return Task(described["taskArn"], str(details.get("privateIPv4Address", "")),
                str(details.get("networkInterfaceId", "")))  # fmt: skip


def public_ip(clients: Any, where: Target, task: Task) -> str:
    """The public IPv4 address of the task's network interface (the bastion's: its service assigns one)."""
    ec2 = clients.reader(where.account, where.region, "ec2")
    try:
        interfaces = ec2.describe_network_interfaces(NetworkInterfaceIds=[task.network_interface])
    except ClientError as error:
        raise _worded(error, where) from None
    for interface in interfaces.get("NetworkInterfaces", []):
        address = (interface.get("Association") or {}).get("PublicIp")
        if address:
            return str(address)
    raise ConnectError(f"the bastion task {task.arn} of instance {where.instance} has no public IP on its network "
                       f"interface {task.network_interface}: its service must assign one (AssignPublicIp ENABLED); "
                       "run `python deploy.py render` and deploy")  # fmt: skip


def _worded(error: ClientError, where: Target) -> UserError:
    code = error.response.get("Error", {}).get("Code", "")
    if code == "ClusterNotFoundException":
        return ConnectError(f"instance {where.instance} is not deployed: there is no ECS cluster {where.cluster} in "
                            f"account {where.account} ({where.region}); run `python deploy.py deploy`")  # fmt: skip
    if code in DENIED:
        return ConnectError(f"the reader role {naming.DEPLOY_READER_ROLE} in account {where.account} may not read "
                            f"the tasks of {where.cluster} ({code}): deploy the current {naming.BOOTSTRAP} "
                            f"template, which grants it (`python deploy.py deploy --only {naming.BOOTSTRAP}`)")
    return explain(error)


# --- what is printed -------------------------------------------------------------------------------------------------


def exec_command(where: Target, task: Task) -> str:
    return shlex.join(["aws", "ecs", "execute-command", "--region", where.region, "--cluster", where.cluster,
                       "--task", task.arn, "--container", where.container, "--interactive",
                       "--command", "/bin/bash"])  # fmt: skip


def exec_notes(where: Target) -> list[str]:
    return [f"run it with credentials of account {where.account} (the instance's; the admin account's --profile "
            f"does not reach its tasks), e.g. add --profile <a profile of {where.account}>: they need "
            f"ecs:ExecuteCommand on cluster {where.cluster}, and the AWS CLI needs the Session Manager plugin"]


def ssh_command(bastion_ip: str, task_ip: str) -> str:
    return shlex.join(["ssh", "-J", f"{ADMIN_USER}@{bastion_ip}", f"{ADMIN_USER}@{task_ip}"])


def ssh_notes(where: Target, bastion_ip: str) -> list[str]:
    return [f"the bastion {bastion_ip} admits SSH only from instances.{where.instance}.bastion.allowed_cidrs, and "
            f"both hops log in as {ADMIN_USER} with the key whose public half is in the secret "
            f"{ssh_key_secret_name(where.instance)}; the bastion's IP changes with every task it starts"]
