"""SSH behind the bastion in the compute template: with a bastion every RStudio and Shiny container gets the bastion
key secret as SSH_PUBLIC_KEY (and declares port 22), and its task execution role may read exactly that secret besides
its own; without one, nothing of it appears."""

from __future__ import annotations

from typing import Any

import pytest

from generator.instance.security_groups import SSH_PORT
from generator.stacks.instance import build
from stacksets.config import parse_config
from stacksets.naming import BASTION_KEY_SECRET, KEY_ARN
from tests.instance_parts import IMAGE_TAGS

KEY_SECRET = {"Ref": BASTION_KEY_SECRET}


def tasks(data: dict[str, Any], instance: str) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """RStudio and Shiny task definition -> (its one container, its execution role), from the whole template."""
    resources = build(parse_config(data), instance, IMAGE_TAGS).to_dict()["Resources"]
    found = {}
    for name, resource in resources.items():
        if resource["Type"] == "AWS::ECS::TaskDefinition" and not name.startswith("Bastion"):
            props = resource["Properties"]
            [container] = props["ContainerDefinitions"]
            role = resources[props["ExecutionRoleArn"]["Fn::GetAtt"][0]]
            found[name] = (container, role)
    return found


def statements(role: dict[str, Any], action: str) -> list[dict[str, Any]]:
    [policy] = role["Properties"]["Policies"]
    return [s for s in policy["PolicyDocument"]["Statement"] if action in s["Action"]]


def read_secrets(role: dict[str, Any]) -> list[Any]:
    return [resource for s in statements(role, "secretsmanager:GetSecretValue") for resource in s["Resource"]]


def with_bastion(data: dict[str, Any], instance: str, enabled: bool) -> dict[str, Any]:
    data["instances"][instance]["bastion"] = ({"enabled": True, "allowed_cidrs": ["198.51.100.0/24"]} if enabled
                                              else {"enabled": False})  # fmt: skip
    data["instances"][instance]["shiny"] = {**data["instances"][instance].get("shiny", {}), "enabled": True}
    return data


@pytest.mark.parametrize("instance", ["dev", "prod"])  # shared and per-user servers
def test_with_a_bastion_every_rstudio_and_shiny_container_gets_the_key(example_data, instance):
    found = tasks(with_bastion(example_data, instance, True), instance)
    assert "ShinyTaskDefinition" in found and any("RStudio" in name for name in found)
    for name, (container, role) in found.items():
        ssh = [secret for secret in container["Secrets"] if secret["Name"] == "SSH_PUBLIC_KEY"]
        assert ssh == [{"Name": "SSH_PUBLIC_KEY", "ValueFrom": KEY_SECRET}], name
        assert {"ContainerPort": SSH_PORT, "Protocol": "tcp"} in container["PortMappings"], name
        # The role reads the key secret once, and otherwise exactly the secrets its container names.
        readable = read_secrets(role)
        assert readable.count(KEY_SECRET) == 1, name
        assert sorted(map(str, readable)) == sorted(str(secret["ValueFrom"]) for secret in container["Secrets"]), name
        # The secret is encrypted with the instance key (generator/stacks/storage.py).
        decrypt = [resource for s in statements(role, "kms:Decrypt") for resource in s["Resource"]]
        assert decrypt == [{"Ref": KEY_ARN}], name


def test_shiny_reads_no_secret_but_the_key(example_data):
    found = tasks(with_bastion(example_data, "prod", True), "prod")
    container, role = found["ShinyTaskDefinition"]
    assert read_secrets(role) == [KEY_SECRET]
    assert [secret["Name"] for secret in container["Secrets"]] == ["SSH_PUBLIC_KEY"]


@pytest.mark.parametrize("instance", ["dev", "prod"])
def test_without_a_bastion_no_container_gets_a_key_or_port_22(example_data, instance):
    found = tasks(with_bastion(example_data, instance, False), instance)
    assert found
    for name, (container, role) in found.items():
        assert "SSH_PUBLIC_KEY" not in [secret["Name"] for secret in container.get("Secrets", [])], name
        assert SSH_PORT not in [mapping["ContainerPort"] for mapping in container["PortMappings"]], name
        assert KEY_SECRET not in read_secrets(role), name
    container, role = found["ShinyTaskDefinition"]
    assert "Secrets" not in container and read_secrets(role) == [] and statements(role, "kms:Decrypt") == []
    template = build(parse_config(example_data), instance, IMAGE_TAGS).to_dict()
    assert BASTION_KEY_SECRET not in template["Parameters"]
