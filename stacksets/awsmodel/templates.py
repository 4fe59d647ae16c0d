"""Reading templates the way CloudFormation's API does before any stack work: parse once per body, and the IAM
capability a template needs."""

from __future__ import annotations

import hashlib
from functools import lru_cache
from typing import Any

from cfn_tools import load_yaml

# Types that need CAPABILITY_IAM, and with a custom name CAPABILITY_NAMED_IAM (user guide, "Acknowledging IAM
# resources in CloudFormation templates").
IAM_NAME_PROPERTIES = {"AWS::IAM::Role": "RoleName", "AWS::IAM::ManagedPolicy": "ManagedPolicyName",
                       "AWS::IAM::User": "UserName", "AWS::IAM::Group": "GroupName",
                       "AWS::IAM::InstanceProfile": "InstanceProfileName", "AWS::IAM::Policy": None,
                       "AWS::IAM::AccessKey": None, "AWS::IAM::UserToGroupAddition": None}  # fmt: skip


def parsed_template(body: str) -> dict[str, Any]:
    """The template as data (short tags expanded); ValueError when it does not parse as a template."""
    return _parse(hashlib.sha256(body.encode("utf-8")).hexdigest(), body)


@lru_cache(maxsize=64)
def _parse(_digest: str, body: str) -> dict[str, Any]:
    try:
        data = load_yaml(body)
    except Exception as error:  # noqa: BLE001 - any parser error is a template format error to the API
        raise ValueError(str(error).splitlines()[0] if str(error) else type(error).__name__) from None
    if not isinstance(data, dict) or not isinstance(data.get("Resources"), dict):
        raise ValueError("At least one Resources member must be defined.")
    return data


def required_capability(body: str) -> str | None:
    resources = parsed_template(body)["Resources"]
    needed = None
    for resource in resources.values():
        kind = resource.get("Type", "")
        if kind not in IAM_NAME_PROPERTIES:
            continue
        name_property = IAM_NAME_PROPERTIES[kind]
        if name_property and name_property in (resource.get("Properties") or {}):
            return "CAPABILITY_NAMED_IAM"
        needed = "CAPABILITY_IAM"
    return needed
