"""Private homes in per-user mode, judged by evaluating the rendered policies rather than by their shape.

A small evaluator for exactly the statement forms the generators write (Allow/Deny, exact actions, the condition
operators below) decides an EFS mount the way IAM does within one account: allowed when an identity-policy statement
allows it and no statement of the identity or file-system policy denies it. Anything it does not know (an operator,
a wildcard action, an unresolved intrinsic) fails the test instead of being guessed, the stricter reading.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from generator.stacks import instance as instance_stack
from generator.stacks import instance_data, storage
from stacksets.config import Config
from tests.instance_parts import IMAGE_TAGS

REGION, FILE_SYSTEM = "eu-west-1", "fs-0123456789abcdef0"
PROD_USERS = ("alice", "bob", "chen")
MOUNT, WRITE = "elasticfilesystem:ClientMount", "elasticfilesystem:ClientWrite"
ROOT = "elasticfilesystem:ClientRootAccess"


class World:
    """One instance's compute template with its intrinsics resolved to the values AWS would give them."""

    def __init__(self, cfg: Config, instance: str) -> None:
        self.account = cfg.instances[instance].account
        self.instance = instance
        self.resources = instance_stack.build(cfg, instance, IMAGE_TAGS).to_dict()["Resources"]
        self.fs_arn = f"arn:aws:elasticfilesystem:{REGION}:{self.account}:file-system/{FILE_SYSTEM}"
        self.fs_policy = self.resolve(storage.build(cfg, instance).to_dict()["Resources"]["FileSystem"]["Properties"]
                                      ["FileSystemPolicy"])  # fmt: skip

    def of_type(self, kind: str) -> dict[str, Any]:
        return {name: r for name, r in self.resources.items() if r["Type"] == kind}

    def role_arn(self, name: str) -> str:
        return f"arn:aws:iam::{self.account}:role/{name}"

    def ap_arn(self, logical_id: str) -> str:
        return f"arn:aws:elasticfilesystem:{REGION}:{self.account}:access-point/fsap-{logical_id}"

    def resolve(self, node: Any) -> Any:
        if isinstance(node, list):
            return [self.resolve(item) for item in node]
        if not isinstance(node, dict):
            return node
        if set(node) == {"Ref"}:
            name = node["Ref"]
            refs = {"FileSystemId": FILE_SYSTEM, "AWS::AccountId": self.account, "AWS::Region": REGION,
                    "AWS::Partition": "aws"}  # fmt: skip
            if name in refs:
                return refs[name]
            if name not in self.resources:
                return f"parameter-{name}"
            kind = self.resources[name]["Type"]
            if kind == "AWS::EFS::AccessPoint":
                return f"fsap-{name}"
            if kind == "AWS::IAM::Role":
                return self.resources[name]["Properties"]["RoleName"]
            return f"ref-of-{name}"  # another resource: a value no EFS or IAM ARN can equal
        if set(node) == {"Fn::GetAtt"}:
            name, attribute = node["Fn::GetAtt"]
            kind = self.resources[name]["Type"]
            if kind == "AWS::EFS::AccessPoint" and attribute == "Arn":
                return self.ap_arn(name)
            if kind == "AWS::IAM::Role" and attribute == "Arn":
                return self.role_arn(self.resources[name]["Properties"]["RoleName"])
            return f"arn:other:{name}.{attribute}"  # a log group, a key, ...: never equal to what is asked here
        if set(node) == {"Fn::Sub"}:
            body, names = (node["Fn::Sub"], {}) if isinstance(node["Fn::Sub"], str) else node["Fn::Sub"]
            values = {"AWS::Partition": "aws", "AWS::AccountId": self.account, "AWS::Region": REGION,
                      **{key: self.resolve(value) for key, value in names.items()}}  # fmt: skip
            return re.sub(r"\$\{([^}]+)\}", lambda m: values[m.group(1)], body)
        return {key: self.resolve(value) for key, value in node.items()}

    def identity_statements(self, role_logical_id: str) -> list[dict[str, Any]]:
        role = self.resources[role_logical_id]["Properties"]
        found = [s for policy in role.get("Policies", []) for s in policy["PolicyDocument"]["Statement"]]
        for policy in self.of_type("AWS::IAM::Policy").values():
            if {"Ref": role_logical_id} in policy["Properties"]["Roles"]:
                found += policy["Properties"]["PolicyDocument"]["Statement"]
        return self.resolve(found)

    def role_logical_id(self, arn: str) -> str:
        (found,) = [name for name, r in self.of_type("AWS::IAM::Role").items()
                    if self.role_arn(r["Properties"].get("RoleName", "")) == arn]  # fmt: skip
        return found

    def mount_allowed(self, role_arn: str, access_point: str, action: str) -> bool:
        """May a principal with this role do `action` on the file system through this access point (over TLS)?"""
        context = {"aws:PrincipalArn": role_arn, "aws:SecureTransport": "true",
                   "elasticfilesystem:AccessPointArn": self.ap_arn(access_point)}  # fmt: skip
        fs_statements = self.fs_policy["Statement"]
        if any(s["Effect"] == "Deny" and matches(s, action, None, context) for s in fs_statements):
            return False
        if not any(r["Properties"].get("RoleName") and self.role_arn(r["Properties"]["RoleName"]) == role_arn
                   for r in self.of_type("AWS::IAM::Role").values()):  # fmt: skip
            return False  # no such role in the template: no identity policy allows anything
        identity = self.identity_statements(self.role_logical_id(role_arn))
        if any(s["Effect"] == "Deny" and matches(s, action, self.fs_arn, context) for s in identity):
            return False
        return any(s["Effect"] == "Allow" and matches(s, action, self.fs_arn, context) for s in identity)

    def task_mounts(self) -> dict[str, list[tuple[str, bool]]]:
        """Task role ARN -> (access point, read only) for every EFS volume of every task definition using it, and the
        DataSync EFS locations' role -> what they write."""
        found: dict[str, list[tuple[str, bool]]] = {}
        for definition in self.of_type("AWS::ECS::TaskDefinition").values():
            props = definition["Properties"]
            read_only = {p["SourceVolume"]: p.get("ReadOnly", False) for c in props["ContainerDefinitions"]
                         for p in c.get("MountPoints", [])}  # fmt: skip
            for volume in props.get("Volumes", []):
                efs = volume.get("EFSVolumeConfiguration")
                if efs:
                    role = self.resolve(props["TaskRoleArn"])
                    found.setdefault(role, []).append((efs["AuthorizationConfig"]["AccessPointId"]["Ref"],
                                                       read_only[volume["Name"]]))  # fmt: skip
        for location in self.of_type("AWS::DataSync::LocationEFS").values():
            props = location["Properties"]
            found.setdefault(self.resolve(props["FileSystemAccessRoleArn"]), []).append(
                (props["AccessPointArn"]["Fn::GetAtt"][0], False))
        return found


def values(value: Any) -> list[str]:
    return value if isinstance(value, list) else [value]


def condition_holds(operator: str, key: str, expected: Any, context: dict[str, str]) -> bool:
    present = key in context
    if operator == "Null":
        return (not present) == (values(expected) == ["true"])
    if operator in ("StringEquals", "ArnEquals"):
        return present and context[key] in values(expected)
    if operator == "ArnNotEquals":
        # Negated operators hold when the key is absent, and when it matches none of the values (NOR).
        return not present or context[key] not in values(expected)
    if operator == "Bool":
        return present and context[key] in values(expected)
    raise AssertionError(f"the evaluator does not know {operator}")


def matches(statement: dict[str, Any], action: str, resource: str | None, context: dict[str, str]) -> bool:
    actions = values(statement["Action"])
    assert not any("*" in a for a in actions), statement  # the generators write EFS actions out
    if action not in actions:
        return False
    if resource is not None and "Resource" in statement:
        assert not any("*" in r for r in values(statement["Resource"])), statement
        if resource not in values(statement["Resource"]):
            return False
    return all(condition_holds(operator, key, expected, context)
               for operator, block in statement.get("Condition", {}).items() for key, expected in block.items())


@pytest.fixture(scope="module")
def prod(cfg) -> World:
    return World(cfg, "prod")


@pytest.fixture(scope="module")
def dev(cfg) -> World:
    return World(cfg, "dev")


def user_role(world: World, user: str) -> str:
    return world.role_arn(f"rstudio-{world.instance}-user-{user}")


@pytest.mark.parametrize("user", PROD_USERS)
def test_a_users_role_mounts_their_own_home_read_write_as_root(prod, user):
    home = f"{user.title()}HomeAccessPoint"
    assert all(prod.mount_allowed(user_role(prod, user), home, action) for action in (MOUNT, WRITE, ROOT))


@pytest.mark.parametrize("user,other", [(u, o) for u in PROD_USERS for o in PROD_USERS if u != o])
def test_a_users_role_cannot_mount_another_users_home(prod, user, other):
    home = f"{other.title()}HomeAccessPoint"
    assert not any(prod.mount_allowed(user_role(prod, user), home, action) for action in (MOUNT, WRITE, ROOT))


@pytest.mark.parametrize("user", PROD_USERS)
def test_a_users_role_mounts_the_shared_folders_and_cannot_write_the_sync_folders(prod, user):
    role = user_role(prod, user)
    assert prod.mount_allowed(role, "ShinyAppsAccessPoint", WRITE)
    for sync in ("HourlySyncAccessPoint", "InstantUploadAccessPoint"):
        assert prod.mount_allowed(role, sync, MOUNT)
        assert not prod.mount_allowed(role, sync, WRITE) and not prod.mount_allowed(role, sync, ROOT)
    assert not prod.mount_allowed(role, "ShinyHomeAccessPoint", MOUNT)


def test_no_shared_rstudio_role_is_left_in_per_user_mode(prod):
    # The role every server shared before; a role of that name made by hand must not mount either.
    old = prod.role_arn("rstudio-prod-rstudio-task")
    assert old not in {prod.role_arn(r["Properties"].get("RoleName", "")) for r in prod.of_type("AWS::IAM::Role")
                       .values()}  # fmt: skip
    assert not prod.mount_allowed(old, "AliceHomeAccessPoint", MOUNT)


@pytest.mark.parametrize("instance", ["dev", "prod"])
def test_every_role_may_mount_what_its_task_definitions_or_locations_mount(request, instance):
    world = request.getfixturevalue(instance)
    mounts = world.task_mounts()
    assert len(mounts) == (3 if instance == "dev" else len(PROD_USERS) + 2)  # RStudio role(s), Shiny, DataSync
    for role, points in mounts.items():
        for access_point, read_only in points:
            assert world.mount_allowed(role, access_point, MOUNT), (role, access_point)
            assert read_only or world.mount_allowed(role, access_point, WRITE), (role, access_point)


@pytest.mark.parametrize("instance", ["dev", "prod"])
def test_the_file_system_policy_admits_exactly_the_roles_that_mount(request, instance):
    world = request.getfixturevalue(instance)
    access_point = next(iter(world.of_type("AWS::EFS::AccessPoint")))
    context = {"aws:SecureTransport": "true", "elasticfilesystem:AccessPointArn": world.ap_arn(access_point)}

    def admitted(arn: str) -> bool:
        return not any(s["Effect"] == "Deny" and matches(s, MOUNT, None, {**context, "aws:PrincipalArn": arn})
                       for s in world.fs_policy["Statement"])  # fmt: skip

    roles = {world.role_arn(r["Properties"]["RoleName"]) for r in world.of_type("AWS::IAM::Role").values()
             if "RoleName" in r["Properties"]}  # fmt: skip
    assert {arn for arn in roles if admitted(arn)} == set(world.task_mounts())
    assert not admitted(f"arn:aws:iam::{world.account}:user/admin")


def test_the_file_system_policy_refuses_plain_text_and_mounts_past_the_access_points(prod):
    role = user_role(prod, "alice")
    statements = prod.fs_policy["Statement"]
    plain = {"aws:PrincipalArn": role, "aws:SecureTransport": "false",
             "elasticfilesystem:AccessPointArn": prod.ap_arn("AliceHomeAccessPoint")}  # fmt: skip
    assert any(s["Effect"] == "Deny" and matches(s, MOUNT, None, plain) for s in statements)
    bare = {"aws:PrincipalArn": role, "aws:SecureTransport": "true"}
    assert any(s["Effect"] == "Deny" and matches(s, MOUNT, None, bare) for s in statements)


@pytest.mark.parametrize("instance", ["dev", "prod"])
def test_the_athena_role_trusts_every_rstudio_role_and_each_may_assume_it(cfg, request, instance):
    world = request.getfixturevalue(instance)
    athena_name = f"rstudio-{instance}-athena"
    data = instance_data.build(cfg, instance).to_dict()["Resources"]
    (athena,) = [r for r in data.values() if r["Properties"].get("RoleName") == athena_name]
    (trust,) = world.resolve(athena["Properties"]["AssumeRolePolicyDocument"]["Statement"])
    assert trust["Principal"] == {"AWS": f"arn:aws:iam::{world.account}:root"}
    athena_arn = f"arn:aws:iam::{cfg.accounts.data}:role/{athena_name}"
    rstudio = {arn for arn in world.task_mounts() if "-datasync-" not in arn and "-shiny-" not in arn}
    assert len(rstudio) == (1 if instance == "dev" else len(PROD_USERS))
    for role in rstudio:
        for action in ("sts:AssumeRole", "sts:SetSourceIdentity"):
            assert trust["Effect"] == "Allow" and matches(trust, action, None, {"aws:PrincipalArn": role})
            identity = world.identity_statements(world.role_logical_id(role))
            assert any(s["Effect"] == "Allow" and matches(s, action, athena_arn, {}) for s in identity)
    for other in ("rstudio-prod-rstudio-task" if instance == "prod" else "rstudio-dev-user-dana",
                  f"rstudio-{instance}-shiny-task"):
        assert not matches(trust, "sts:AssumeRole", None, {"aws:PrincipalArn": world.role_arn(other)})
