"""EFS: homes only their users can read, the shared app folder Shiny can serve, read-only sync folders, TLS + IAM.

The file system and its policy are the storage StackSet's (generator/stacks/storage.py); the compute template mounts
it through its FileSystemId parameter, with its own mount targets, access points and grants."""

from __future__ import annotations

from typing import Any

import pytest
from troposphere import Template

from generator.instance.capacity import add_ec2_capacity
from generator.instance.dns import add_certificates
from generator.instance.ingress import add_ingress
from generator.instance.rstudio import SHARED_ADMIN_UID, add_rstudio
from generator.instance.shiny import add_shiny, add_shiny_task_role
from generator.instance.storage import SHINY_APPS_GID, SHINY_UID, TaskRoles, add_storage
from generator.render import render
from generator.stacks import storage as storage_stack
from stacksets.config import ConfigError, LaunchType, parse_config
from stacksets.template_checks import check_template, lint_template
from tests.instance_parts import IMAGE_TAGS, drop_unused_stored_parameters, groundwork

USERS = {"alice": 3001, "bob": 3002, "chen": 3003}
ROLES = {"RStudioTaskRole", "ShinyTaskRole", "DataSyncEfsRole"}
SYNC = {"/s3_data_sync/hourly_sync": "HourlySyncAccessPoint",
        "/s3_data_sync/instant_upload": "InstantUploadAccessPoint"}  # fmt: skip
# The kept file system, as the compute template sees it: its FileSystemId parameter and the ARN built from it.
FILE_SYSTEM_ID = {"Ref": "FileSystemId"}
FILE_SYSTEM_ARN = {"Fn::Sub": ["arn:${AWS::Partition}:elasticfilesystem:${AWS::Region}:${AWS::AccountId}:"
                               "file-system/${Id}", {"Id": FILE_SYSTEM_ID}]}  # fmt: skip


def build(cfg, instance: str) -> Template:
    """The instance's groundwork, storage, and the real ingress, RStudio and Shiny builders wired to the storage."""
    g = groundwork(cfg, instance)
    t = g.template
    shiny_role = add_shiny_task_role(t, instance, g.cluster, g.key)
    storage = add_storage(t, cfg, instance, g.network, g.groups, g.stored.file_system,
                          TaskRoles(g.rstudio_task_roles, shiny_role))  # fmt: skip
    ingress = add_ingress(t, cfg, instance, g.network, g.groups, add_certificates(t, cfg, instance))
    secrets = g.stored.secrets
    on_ec2 = cfg.instances[instance].rstudio.launch_type is LaunchType.ec2
    capacity = add_ec2_capacity(t, cfg, instance, g.network, g.cluster, g.key) if on_ec2 else None
    add_rstudio(t, cfg, instance, g.network, g.groups, g.cluster, g.key, g.rstudio_task_roles, secrets,
                ingress.rstudio_target_groups, ingress.rstudio_rules, capacity, storage,
                image_tag=IMAGE_TAGS["rstudio"])  # fmt: skip
    add_shiny(t, cfg, instance, g.network, g.groups, g.cluster, g.key, ingress.load_balancer,
              ingress.shiny_target_group, ingress.shiny_rule, storage, shiny_role,
              image_tag=IMAGE_TAGS["shiny"])  # fmt: skip
    return t


@pytest.fixture(scope="module")
def templates(cfg) -> dict[str, dict[str, Any]]:
    return {instance: build(cfg, instance).to_dict() for instance in ("dev", "prod")}


@pytest.fixture(scope="module")
def dev(templates) -> dict[str, Any]:
    return templates["dev"]["Resources"]


@pytest.fixture(scope="module")
def prod(templates) -> dict[str, Any]:
    return templates["prod"]["Resources"]


def of_type(resources: dict[str, Any], kind: str) -> dict[str, Any]:
    return {name: r for name, r in resources.items() if r["Type"] == kind}


def access_points(resources: dict[str, Any]) -> dict[str, tuple[str, str, str, str]]:
    """Access point -> (path, uid, gid, permissions)."""
    found = {}
    for name, ap in of_type(resources, "AWS::EFS::AccessPoint").items():
        root = ap["Properties"]["RootDirectory"]
        info = root["CreationInfo"]
        assert "PosixUser" not in ap["Properties"], name  # root in the container creates users and homes
        found[name] = (root["Path"], info["OwnerUid"], info["OwnerGid"], info["Permissions"])
    return found


def mounts(resources: dict[str, Any], definition: str) -> dict[str, tuple[str, bool]]:
    """Container path -> (access point, read-only) of a task definition's only container, checking each volume."""
    props = resources[definition]["Properties"]
    volumes = {}
    for volume in props["Volumes"]:
        efs = volume["EFSVolumeConfiguration"]
        assert efs["FilesystemId"] == FILE_SYSTEM_ID
        assert efs["TransitEncryption"] == "ENABLED" and efs["AuthorizationConfig"]["IAM"] == "ENABLED"
        assert "RootDirectory" not in efs  # the access point decides the directory
        volumes[volume["Name"]] = efs["AuthorizationConfig"]["AccessPointId"]["Ref"]
    (container,) = props["ContainerDefinitions"]
    points = container["MountPoints"]
    assert sorted(p["SourceVolume"] for p in points) == sorted(volumes)  # every volume mounted once
    return {p["ContainerPath"]: (volumes[p["SourceVolume"]], p["ReadOnly"]) for p in points}


def grants(resources: dict[str, Any], policy: str) -> dict[str, set[str]]:
    """Access point -> actions an identity policy allows through it (each statement scoped to access points)."""
    allowed: dict[str, set[str]] = {}
    for statement in resources[policy]["Properties"]["PolicyDocument"]["Statement"]:
        assert statement["Effect"] == "Allow" and statement["Resource"] == [FILE_SYSTEM_ARN]
        for ap in statement["Condition"]["StringEquals"]["elasticfilesystem:AccessPointArn"]:
            allowed.setdefault(ap["Fn::GetAtt"][0], set()).update(statement["Action"])
    return allowed


def test_per_user_homes_belong_to_their_users_and_nobody_else_reads_them(prod):
    homes = {name: ap for name, ap in access_points(prod).items() if ap[0].startswith("/home")}
    assert homes == {f"{user.title()}HomeAccessPoint": (f"/home/{user}", str(uid), str(uid), "0700")
                     for user, uid in USERS.items()}  # fmt: skip


@pytest.mark.parametrize("user", USERS)
def test_each_per_user_task_mounts_only_its_own_home(prod, user):
    found = mounts(prod, f"{user.title()}RStudioTaskDefinition")
    homes = {path: ap for path, (ap, _) in found.items() if ap.endswith("HomeAccessPoint")}
    assert homes == {f"/home/{user}": f"{user.title()}HomeAccessPoint"}
    assert found[f"/home/{user}"][1] is False


def test_shared_server_mounts_one_root_owned_home_folder(dev):
    homes = {name: ap for name, ap in access_points(dev).items() if ap[0].startswith("/home")}
    assert homes == {"HomeAccessPoint": ("/home", "0", "0", "0755")}  # the container creates the 0700 homes
    assert mounts(dev, "RStudioTaskDefinition")["/home"] == ("HomeAccessPoint", False)


@pytest.mark.parametrize("instance,definition",
                         [("dev", "RStudioTaskDefinition"), ("prod", "BobRStudioTaskDefinition")])  # fmt: skip
def test_rstudio_mounts_apps_read_write_and_sync_folders_read_only(templates, instance, definition):
    found = mounts(templates[instance]["Resources"], definition)
    assert found["/srv/shiny-server"] == ("ShinyAppsAccessPoint", False)
    assert {path: found[path] for path in SYNC} == {path: (ap, True) for path, ap in SYNC.items()}
    assert len(found) == 4


def test_sync_folders_are_root_owned_and_written_by_datasync_only(dev):
    found = access_points(dev)
    assert {found[ap][0]: found[ap][1:] for ap in SYNC.values()} == {path: ("0", "0", "0755") for path in SYNC}
    assert set(grants(dev, "DataSyncEfsRolePolicy")) == set(SYNC.values())
    # RStudio may mount them but not write, even as root: read-only holds on the server side too.
    rstudio = grants(dev, "RStudioTaskRoleEfsPolicy")
    assert {rstudio[ap] == {"elasticfilesystem:ClientMount"} for ap in SYNC.values()} == {True}


def test_app_folder_is_shared_by_group_with_setgid_and_sticky_bits(dev):
    assert access_points(dev)["ShinyAppsAccessPoint"] == ("/srv/shiny-server", "0", str(SHINY_APPS_GID), "3775")
    assert access_points(dev)["ShinyHomeAccessPoint"] == ("/shiny", str(SHINY_UID), str(SHINY_UID), "0750")


@pytest.mark.parametrize("taken", [SHINY_APPS_GID, SHINY_UID, SHARED_ADMIN_UID])
def test_no_user_can_take_the_app_group_or_a_service_users_id(example_data, taken):
    example_data["instances"]["dev"]["users"]["dana"]["uid"] = taken
    with pytest.raises(ConfigError, match="greater than or equal to 2000"):
        parse_config(example_data)


def test_shiny_serves_apps_read_only_and_keeps_shared_state_in_its_home(dev):
    assert mounts(dev, "ShinyTaskDefinition") == {
        "/srv/shiny-server": ("ShinyAppsAccessPoint", True),
        "/home/shiny": ("ShinyHomeAccessPoint", False),
    }
    assert grants(dev, "ShinyTaskRoleEfsPolicy") == {
        "ShinyAppsAccessPoint": {"elasticfilesystem:ClientMount", "elasticfilesystem:ClientRootAccess"},
        "ShinyHomeAccessPoint": {"elasticfilesystem:ClientMount", "elasticfilesystem:ClientWrite",
                                 "elasticfilesystem:ClientRootAccess"},  # root creates the bookmark folder
    }  # fmt: skip


@pytest.mark.parametrize("user", USERS)
def test_a_per_user_role_reaches_its_own_home_as_root_and_nothing_of_shiny(prod, user):
    policy = f"{user.title()}RStudioTaskRoleEfsPolicy"
    found = grants(prod, policy)
    every = {"elasticfilesystem:ClientMount", "elasticfilesystem:ClientWrite", "elasticfilesystem:ClientRootAccess"}
    homes = {ap: found[ap] for ap in found if ap.endswith("HomeAccessPoint")}
    assert homes == {f"{user.title()}HomeAccessPoint": every}
    assert found["ShinyAppsAccessPoint"] == every  # the start script (root) repairs the folder's group and mode
    assert "ShinyHomeAccessPoint" not in found
    assert prod[policy]["Properties"]["Roles"] == [{"Ref": f"{user.title()}RStudioTaskRole"}]


def test_file_system_is_encrypted_with_the_instance_key_backed_up_and_retained(cfg, templates, dev):
    # Kept in the storage StackSet; the compute template only takes its id.
    assert not of_type(dev, "AWS::EFS::FileSystem")
    assert templates["dev"]["Parameters"]["FileSystemId"]["Type"] == "String"
    fs = storage_stack.build(cfg, "dev").to_dict()["Resources"]["FileSystem"]
    assert (fs["DeletionPolicy"], fs["UpdateReplacePolicy"]) == ("RetainExceptOnCreate", "Retain")
    props = fs["Properties"]
    assert props["Encrypted"] is True and props["KmsKeyId"] == {"Fn::GetAtt": ["InstanceKey", "Arn"]}
    assert props["BackupPolicy"] == {"Status": "ENABLED"}
    assert props["LifecyclePolicies"] == [{"TransitionToIA": "AFTER_30_DAYS"},
                                          {"TransitionToPrimaryStorageClass": "AFTER_1_ACCESS"}]  # fmt: skip
    assert (props["PerformanceMode"], props["ThroughputMode"]) == ("generalPurpose", "elastic")


@pytest.mark.parametrize("instance,zones", [("dev", "AB"), ("prod", "ABC")])
def test_a_mount_target_in_every_private_subnet(templates, instance, zones):
    targets = of_type(templates[instance]["Resources"], "AWS::EFS::MountTarget")
    assert {t["Properties"]["SubnetId"]["Ref"]: name for name, t in targets.items()} == {
        f"PrivateSubnet{zone}": f"MountTarget{zone}" for zone in zones
    }
    for target in targets.values():
        assert target["Properties"]["FileSystemId"] == FILE_SYSTEM_ID
        assert target["Properties"]["SecurityGroups"] == [{"Fn::GetAtt": ["FileSystemSecurityGroup", "GroupId"]}]


def test_nfs_reaches_the_mount_targets_only_from_rstudio_shiny_and_datasync(prod):
    ingress = [r["Properties"] for r in of_type(prod, "AWS::EC2::SecurityGroupIngress").values()
               if r["Properties"]["GroupId"] == {"Fn::GetAtt": ["FileSystemSecurityGroup", "GroupId"]}]  # fmt: skip
    assert {(r["SourceSecurityGroupId"]["Fn::GetAtt"][0], r["FromPort"], r["ToPort"]) for r in ingress} == {
        (group, 2049, 2049) for group in ("RStudioSecurityGroup", "ShinySecurityGroup", "DataSyncSecurityGroup")
    }
    assert len(ingress) == 3
    egress = {r["Properties"]["GroupId"]["Fn::GetAtt"][0]: r["Properties"]
              for r in of_type(prod, "AWS::EC2::SecurityGroupEgress").values()
              if r["Properties"].get("DestinationSecurityGroupId") ==
              {"Fn::GetAtt": ["FileSystemSecurityGroup", "GroupId"]}}  # fmt: skip
    assert sorted(egress) == ["DataSyncSecurityGroup", "RStudioSecurityGroup", "ShinySecurityGroup"]
    assert {(e["FromPort"], e["ToPort"]) for e in egress.values()} == {(2049, 2049)}
    datasync_out = [r for r in of_type(prod, "AWS::EC2::SecurityGroupEgress").values()
                    if r["Properties"]["GroupId"] == {"Fn::GetAtt": ["DataSyncSecurityGroup", "GroupId"]}]  # fmt: skip
    assert len(datasync_out) == 1  # the DataSync group reaches nothing but NFS on the mount targets


def test_file_system_policy_denies_plain_nfs_bypassing_access_points_and_other_principals(cfg, dev):
    policy = storage_stack.build(cfg, "dev").to_dict()["Resources"]["FileSystem"]["Properties"]["FileSystemPolicy"]
    statements = {s["Sid"]: s for s in policy["Statement"]}
    for statement in statements.values():
        assert statement["Effect"] == "Deny" and statement["Principal"] == {"AWS": "*"}
        assert set(statement["Action"]) == {"elasticfilesystem:ClientMount", "elasticfilesystem:ClientWrite",
                                            "elasticfilesystem:ClientRootAccess"}  # fmt: skip
    assert statements["DenyInsecureTransport"]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert statements["DenyMountsBypassingAccessPoints"]["Condition"] == {
        "Null": {"elasticfilesystem:AccessPointArn": "true"}
    }
    # The storage stack names the compute roles that mount by their fixed names: exactly these three roles.
    named = statements["DenyAllButTheInstanceRoles"]["Condition"]["ArnNotEquals"]["aws:PrincipalArn"]
    assert sorted(arn["Fn::Sub"] for arn in named) == sorted(
        f"arn:${{AWS::Partition}}:iam::${{AWS::AccountId}}:role/{dev[role]['Properties']['RoleName']}"
        for role in ROLES)  # fmt: skip
    assert len(named) == 3


def test_datasync_efs_role_is_trusted_by_datasync_of_this_account(dev):
    (statement,) = dev["DataSyncEfsRole"]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "datasync.amazonaws.com"}
    assert statement["Condition"]["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
    # Fixed: the file-system policy in the storage StackSet names it, and must not depend on the compute stack.
    assert dev["DataSyncEfsRole"]["Properties"]["RoleName"] == "rstudio-dev-datasync-efs"


@pytest.mark.parametrize("instance,service,grant", [
    ("dev", "RStudioService", "RStudioTaskRoleEfsPolicy"),
    ("prod", "ChenRStudioService", "ChenRStudioTaskRoleEfsPolicy"),
    ("dev", "ShinyService", "ShinyTaskRoleEfsPolicy")])  # fmt: skip
def test_services_start_only_once_their_mount_rights_and_mount_targets_exist(templates, instance, service, grant):
    resources = templates[instance]["Resources"]
    targets = of_type(resources, "AWS::EFS::MountTarget")
    assert {grant, *targets} <= set(resources[service]["DependsOn"])


def test_adding_a_user_renames_no_access_point(cfg, example_data):
    example_data["instances"]["prod"]["users"]["aaron"] = {"email": "aaron@example.com", "uid": 3010}
    before = access_points(build(cfg, "prod").to_dict()["Resources"])
    after = access_points(build(parse_config(example_data), "prod").to_dict()["Resources"])
    assert {name: after[name] for name in before} == before
    assert after["AaronHomeAccessPoint"] == ("/home/aaron", "3010", "3010", "0700")


@pytest.mark.parametrize("instance", ["dev", "prod"])
def test_passes_cfn_lint_and_the_house_rules(cfg, instance):
    text = render(drop_unused_stored_parameters(build(cfg, instance)), f"rstudio-{instance}").decode()
    assert lint_template(instance, text, cfg.regions) == []
    assert check_template(instance, text) == []
