"""The instance's file system: one KMS-encrypted EFS, an access point per folder, and who may mount which.

Folders, owners and modes (the UID/GID design; the container contracts in rstudio.py and shiny.py match it):
- Homes: each user's uid is `users.<name>.uid` from the config and their primary group has the same number; homes are
  0700 and owned by the user, so no user reads another's. Per-user mode has one access point per user at
  /home/<user>, which EFS creates owned uid:uid 0700 on first mount, and each server mounts only its own user's. Shared
  mode has one access point /home (root 0755) and the container creates the 0700 homes below it. No access point
  enforces a POSIX user: root in the RStudio container must create users and their homes (chown under an enforced
  user fails, rstudio_ops §2.8).
- Shared app folder /srv/shiny-server: root:shiny-apps (GID 1999) with mode 3775. Every RStudio user and the Shiny
  Server user are in shiny-apps; setgid hands the group to everything created below, so what a user saves there with
  the default umask 022 is readable by Shiny, and the sticky bit keeps one user from deleting or renaming another's
  app. GID 1999 lies below the config's smallest uid (2000), so no user's primary group can ever take it.
- Shiny Server's user "shiny" is uid = gid 999 (SHINY_UID); its home (/shiny on the file system, /home/shiny in the
  Shiny tasks, 0750) holds what the replicas share, such as bookmarks.
- Sync folders /s3_data_sync/hourly_sync and /s3_data_sync/instant_upload: DataSync writes there as root; objects
  that carry no POSIX metadata land as 65534:65534 with 0644 files and 0755 directories, readable by every user. RStudio
  mounts them read-only and its role lacks ClientWrite there, so only DataSync changes them.

Who mounts what: every task mounts through an access point over TLS with IAM authorization (ECS presents the task
role). The grants are identity policies on the roles, each scoped to its access points with
elasticfilesystem:AccessPointArn: within one account an identity-policy Allow is enough, and the file-system policy
cannot name the access points, because each access point refers to the file system (a dependency cycle). The
file-system policy (in the storage StackSet, generator/stacks/storage.py) holds the guardrails instead: no mount
without TLS, none that bypasses the access points, and none by any principal but the RStudio task roles, the Shiny
task role and the DataSync EFS role (an administrator who must mount the file system some other way changes the
policy first).
Per-user isolation rests on the roles: each per-user server has its own task role (generator/stacks/instance.py),
which may mount only that user's home besides the shared folders, because every R session on the server holds the
role's credentials (the image hands them on for Athena) and could mount with them from anywhere NFS reaches. The task
definitions mount only their user's home too, and R sessions run as the user (no sudo). The file-system policy cannot
repeat the per-home rule (it cannot name the access points, above), so it admits the RStudio roles as a set and the
roles' own grants decide which home each may mount. Root in a task (ECS Exec) is an administrator.
Mount targets sit in every private subnet; NFS reaches them only from the RStudio, Shiny and DataSync security groups.
On the EC2 launch type awsvpc tasks mount through their own network interface (the ECS agent mounts in the task's
network namespace), so the RStudio group covers them as well.
"""

from __future__ import annotations

from typing import NamedTuple

import awacs.elasticfilesystem as efs
from awacs.aws import Condition, StringEquals
from troposphere import AWSHelperFn, GetAtt, Ref, Tags, Template
from troposphere.ec2 import SecurityGroup
from troposphere.ecs import AuthorizationConfig, EFSVolumeConfiguration, MountPoint, Volume
from troposphere.efs import (
    AccessPoint,
    CreationInfo,
    MountTarget,
    RootDirectory,
)
from troposphere.iam import PolicyType, Role

from generator.iam import DATASYNC_SOURCE_ARN, Allow, Statement, document, service_trust
from generator.instance.network import Network
from generator.instance.security_groups import SecurityGroups, add_group, allow, allow_out
from generator.instance.servers import RStudioServer, rstudio_servers
from generator.naming import DATASYNC_EFS_ROLE, logical_id, role_name
from stacksets.config import Config, Mode

NFS_PORT = 2049
SHINY_UID = 999
SHINY_APPS_GID = 1999

# Keys of Storage.access_points. Per-user homes are "home/<user>".
HOME = "home"
SHINY_HOME = "shiny_home"
APPS = "apps"
HOURLY_SYNC = "hourly_sync"
INSTANT_UPLOAD = "instant_upload"
SYNC_FOLDERS = (HOURLY_SYNC, INSTANT_UPLOAD)

CLIENT_ACTIONS = [efs.ClientMount, efs.ClientWrite, efs.ClientRootAccess]


class Folder(NamedTuple):
    key: str
    """Key in Storage.access_points."""
    title: str
    """Logical id of the access point."""
    path: str
    """Directory on the file system."""
    uid: int
    gid: int
    permissions: str


class FileSystemRef(NamedTuple):
    """The kept file system, as parameters of the compute stack (generator/instance/secrets.py)."""

    id: AWSHelperFn
    arn: AWSHelperFn


class TaskRoles(NamedTuple):
    rstudio: dict[str, Role]
    """By RStudioServer.key: the shared server's role, or one per per-user server."""
    shiny: Role | None
    """None when shiny.enabled is false: no Shiny home, no Shiny grant."""


class Storage(NamedTuple):
    file_system: FileSystemRef
    """Kept in the storage StackSet (generator/stacks/storage.py); this stack mounts it."""
    security_group: SecurityGroup
    """The mount targets' group."""
    datasync_security_group: SecurityGroup
    """For the DataSync EFS locations: may reach the mount targets on NFS, nothing else."""
    access_points: dict[str, AccessPoint]
    datasync_role: Role
    """FileSystemAccessRoleArn of the DataSync EFS locations (with AccessPointArn and InTransitEncryption TLS1_2)."""
    grants: dict[str, PolicyType]
    """Each role's mount rights by "shiny", "datasync" and rstudio_grant(server): what mounts with a role depends on its
    grant."""
    mount_targets: list[MountTarget]
    """One per private subnet: whatever mounts depends on them (a task whose AZ has none cannot start)."""


def rstudio_grant(server: RStudioServer) -> str:
    """Key in Storage.grants of the grant of this server's task role."""
    return f"rstudio/{server.key}"


def home_key(server: RStudioServer) -> str:
    return HOME if server.key == "shared" else f"{HOME}/{server.key}"


def folders(cfg: Config, instance: str) -> list[Folder]:
    settings = cfg.instances[instance]
    if settings.rstudio.mode is Mode.shared:
        homes = [Folder(HOME, "HomeAccessPoint", "/home", 0, 0, "0755")]
    else:
        homes = [Folder(f"{HOME}/{name}", logical_id(name, "HomeAccessPoint"), f"/home/{name}", user.uid, user.uid,
                        "0700") for name, user in sorted(settings.users.items())]  # fmt: skip
    # The app folder stays without Shiny: RStudio users keep (and may later publish) their apps there.
    shiny = [Folder(SHINY_HOME, "ShinyHomeAccessPoint", "/shiny", SHINY_UID, SHINY_UID, "0750")]
    shiny = shiny if settings.shiny.enabled else []
    return homes + shiny + [
        Folder(APPS, "ShinyAppsAccessPoint", "/srv/shiny-server", 0, SHINY_APPS_GID, "3775"),
        Folder(HOURLY_SYNC, "HourlySyncAccessPoint", "/s3_data_sync/hourly_sync", 0, 0, "0755"),
        Folder(INSTANT_UPLOAD, "InstantUploadAccessPoint", "/s3_data_sync/instant_upload", 0, 0, "0755"),
    ]


def add_storage(t: Template, cfg: Config, instance: str, network: Network, groups: SecurityGroups,
                file_system: FileSystemRef, roles: TaskRoles) -> Storage:  # fmt: skip
    """Mount targets, access points and grants on the kept file system. Access points are pointers: a rebuilt stack
    creates new ones on the same directories, so the homes are the ones from before."""
    efs_group, datasync_group = add_storage_security_groups(t, instance, network, groups)
    datasync_role = t.add_resource(Role(
        "DataSyncEfsRole", RoleName=role_name(instance, DATASYNC_EFS_ROLE),
        Description=f"DataSync EFS locations of RStudio instance {instance}: the sync folders only",
        AssumeRolePolicyDocument=service_trust("datasync.amazonaws.com", DATASYNC_SOURCE_ARN),
    ))  # fmt: skip
    mount_targets = add_mount_targets(t, network, file_system, efs_group)
    access_points = {f.key: add_access_point(t, instance, file_system, f) for f in folders(cfg, instance)}
    grants = add_grants(t, file_system, access_points, rstudio_servers(cfg, instance), roles, datasync_role)
    return Storage(file_system, efs_group, datasync_group, access_points, datasync_role, grants, mount_targets)


def mount_dependencies(storage: Storage, grant: str) -> list[str]:
    """DependsOn for a service or location that mounts with the role of `grant` (a key of Storage.grants)."""
    return [storage.grants[grant].title] + [target.title for target in storage.mount_targets]


def add_storage_security_groups(t: Template, instance: str, network: Network,
                                groups: SecurityGroups) -> tuple[SecurityGroup, SecurityGroup]:  # fmt: skip
    efs_group = add_group(t, "FileSystemSecurityGroup", instance, "EFS mount targets", network.vpc)
    datasync = add_group(t, "DataSyncSecurityGroup", instance, "DataSync EFS locations", network.vpc)
    clients = [("RStudio", groups.rstudio)] + ([("Shiny", groups.shiny)] if groups.shiny is not None else [])
    for name, group in [*clients, ("DataSync", datasync)]:
        allow(t, f"FileSystemNfsFrom{name}", efs_group, NFS_PORT, f"NFS from {name}", source=group)
        allow_out(t, f"{name}NfsToFileSystem", group, NFS_PORT, "NFS to the EFS mount targets", destination=efs_group)
    return efs_group, datasync


def add_mount_targets(t: Template, network: Network, file_system: FileSystemRef,
                      group: SecurityGroup) -> list[MountTarget]:  # fmt: skip
    # Logical ids carry the subnet's AZ letter, like the subnets.
    return [
        t.add_resource(MountTarget(subnet.title.replace("PrivateSubnet", "MountTarget"), FileSystemId=file_system.id,
                                   SubnetId=Ref(subnet), SecurityGroups=[GetAtt(group, "GroupId")]))
        for subnet in network.private_subnets
    ]  # fmt: skip


def add_access_point(t: Template, instance: str, file_system: FileSystemRef, folder: Folder) -> AccessPoint:
    creation = CreationInfo(OwnerUid=str(folder.uid), OwnerGid=str(folder.gid), Permissions=folder.permissions)
    access_point = AccessPoint(
        folder.title, FileSystemId=file_system.id, RootDirectory=RootDirectory(Path=folder.path,
                                                                                   CreationInfo=creation),
        AccessPointTags=Tags(Name=f"rstudio-{instance}{folder.path.replace('/', '-')}"),
    )  # fmt: skip
    return t.add_resource(access_point)


def mount_grant(file_system: FileSystemRef, access_points: list[AccessPoint], actions: list) -> Statement:
    return Statement(Effect=Allow, Action=actions, Resource=[file_system.arn],
                     Condition=Condition(StringEquals("elasticfilesystem:AccessPointArn",
                                                      [GetAtt(ap, "Arn") for ap in access_points])))  # fmt: skip


def add_grants(t: Template, file_system: FileSystemRef, access_points: dict[str, AccessPoint],
               servers: list[RStudioServer], roles: TaskRoles,
               datasync_role: Role) -> dict[str, PolicyType]:  # fmt: skip
    apps = access_points[APPS]
    sync = [access_points[name] for name in SYNC_FOLDERS]
    grants = {}
    for server in servers:
        # Its own home only (every R session on the server holds the role's credentials), as root, who creates users
        # and homes; the app folder as root too, whose start script repairs its group and mode (root:shiny-apps
        # 3775); the sync folders only read-only.
        statements = [mount_grant(file_system, [access_points[home_key(server)]], CLIENT_ACTIONS),
                      mount_grant(file_system, [apps], CLIENT_ACTIONS),
                      mount_grant(file_system, sync, [efs.ClientMount])]  # fmt: skip
        grants[rstudio_grant(server)] = (server.id("TaskRoleEfsPolicy"), roles.rstudio[server.key], statements)
    # Apps read-only; Shiny Server's root process looks into app folders before handing them to "shiny", and creates
    # the bookmark folder in its home (0750, owned by shiny), which a squashed root could not even enter.
    if roles.shiny is not None:
        shiny = [mount_grant(file_system, [apps], [efs.ClientMount, efs.ClientRootAccess]),
                 mount_grant(file_system, [access_points[SHINY_HOME]], CLIENT_ACTIONS)]  # fmt: skip
        grants["shiny"] = ("ShinyTaskRoleEfsPolicy", roles.shiny, shiny)
    grants["datasync"] = ("DataSyncEfsRolePolicy", datasync_role, [mount_grant(file_system, sync, CLIENT_ACTIONS)])
    return {name: t.add_resource(PolicyType(title, PolicyName="efs-mount", Roles=[Ref(role)],
                                            PolicyDocument=document(*statements)))
            for name, (title, role, statements) in grants.items()}  # fmt: skip


class Mount(NamedTuple):
    volume: str
    access_point: str
    """Key in Storage.access_points."""
    path: str
    """Where the container sees the folder."""
    read_only: bool


def rstudio_mounts(server: RStudioServer) -> list[Mount]:
    home = "/home" if server.key == "shared" else f"/home/{server.key}"
    return [
        Mount("home", home_key(server), home, False),
        Mount("shiny-apps", APPS, "/srv/shiny-server", False),
        Mount("hourly-sync", HOURLY_SYNC, "/s3_data_sync/hourly_sync", True),
        Mount("instant-upload", INSTANT_UPLOAD, "/s3_data_sync/instant_upload", True),
    ]


def shiny_mounts() -> list[Mount]:
    return [Mount("shiny-apps", APPS, "/srv/shiny-server", True), Mount("shiny-home", SHINY_HOME, "/home/shiny", False)]


def task_volumes(storage: Storage, mounts: list[Mount]) -> tuple[list[Volume], list[MountPoint]]:
    """Task-definition volumes and the container's mount points: TLS and the task role on every mount."""
    volumes = [
        Volume(Name=m.volume, EFSVolumeConfiguration=EFSVolumeConfiguration(
            FilesystemId=storage.file_system.id, TransitEncryption="ENABLED",
            AuthorizationConfig=AuthorizationConfig(AccessPointId=Ref(storage.access_points[m.access_point]),
                                                    IAM="ENABLED")))
        for m in mounts
    ]  # fmt: skip
    points = [MountPoint(SourceVolume=m.volume, ContainerPath=m.path, ReadOnly=m.read_only) for m in mounts]
    return volumes, points
