"""What AWS needs created first, where CloudFormation would not know: it orders resources only by Ref, GetAtt and
DependsOn ("DependsOn attribute", CloudFormation user guide), so each need below must be one of those, directly or
through a chain. Read from the committed templates, which are what deploys."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cfn_tools import load_yaml

TEMPLATES = Path(__file__).resolve().parents[1] / "templates"


def _references(node: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "Ref" and isinstance(value, str):
                found.add(value)
            elif key == "Fn::GetAtt":
                found.add(value[0] if isinstance(value, list) else str(value).split(".")[0])
            elif key == "Fn::Sub":
                body = value[0] if isinstance(value, list) else value
                found |= {name.split(".")[0] for name in _sub_names(body)}
                if isinstance(value, list):
                    found |= _references(value[1])
            else:
                found |= _references(value)
    elif isinstance(node, list):
        for item in node:
            found |= _references(item)
    return found


def _sub_names(body: str) -> list[str]:
    import re

    return re.findall(r"\$\{([^!][^}]*)\}", body)


def _before(resources: dict[str, Any], name: str) -> set[str]:
    """Every resource CloudFormation creates before `name`."""
    found: set[str] = set()
    pending = [name]
    while pending:
        resource = resources[pending.pop()]
        depends = resource.get("DependsOn", [])
        direct = (_references(resource.get("Properties", {})) | set([depends] if isinstance(depends, str)
                                                                     else depends)) & set(resources)  # fmt: skip
        for other in direct - found:
            found.add(other)
            pending.append(other)
    return found


def _instance_templates() -> list[Path]:
    return sorted(path for path in TEMPLATES.glob("rstudio-*.yaml")
                  if "Vpc" in (load_yaml(path.read_text()).get("Resources") or {}))  # fmt: skip


@pytest.mark.parametrize("path", _instance_templates(), ids=lambda p: p.stem)
def test_what_runs_in_private_subnets_starts_after_their_way_out_through_nat(path):
    """Tasks in private subnets pull their images through the NAT gateway: a task started before its subnet's
    default route exists fails to pull, and the service never stabilises."""
    resources = load_yaml(path.read_text())["Resources"]
    egress = {name for name, r in resources.items()
              if r["Type"] == "AWS::EC2::Route" and r["Properties"].get("NatGatewayId")}  # fmt: skip
    egress |= {name for name, r in resources.items() if r["Type"] == "AWS::EC2::SubnetRouteTableAssociation"
               and name.startswith("PrivateSubnet")}  # fmt: skip
    assert egress
    private_users = [name for name, r in resources.items()
                     if r["Type"] in ("AWS::ECS::Service", "AWS::AutoScaling::AutoScalingGroup")
                     and "PublicSubnet" not in str(r["Properties"])]  # fmt: skip
    assert private_users
    for name in private_users:
        assert egress <= _before(resources, name), (name, sorted(egress - _before(resources, name)))
