"""The instance StackSet's shared groundwork, for tests of one resource group at a time."""

from __future__ import annotations

import json
from typing import Any, NamedTuple

from troposphere import Template

from generator.common import new_template
from generator.instance.cluster import ClusterParts, add_cluster
from generator.instance.network import Network, add_network
from generator.instance.secrets import StoredData, add_stored_data
from generator.instance.security_groups import SecurityGroups, add_security_groups
from generator.stacks import instance as instance_module
from stacksets.config import Config
from stacksets.naming import BASTION_KEY_SECRET, COOKIE_KEY_SECRETS, FILE_SYSTEM_ID, KEY_ARN, PASSWORD_SECRETS

# Image tags for tests that build one group at a time; the real ones are content hashes (generator/images).
IMAGE_TAGS = {"rstudio": "ctx-0000000000000000rs01", "shiny": "ctx-0000000000000000sh01",
              "bastion": "ctx-0000000000000000ba01"}  # fmt: skip


class Groundwork(NamedTuple):
    template: Template
    key: object
    stored: StoredData
    network: Network
    groups: SecurityGroups
    cluster: ClusterParts
    rstudio_task_roles: dict[str, object]
    """By RStudioServer.key."""


def groundwork(cfg: Config, instance: str) -> Groundwork:
    """A template holding what every group builds on: the stored data's parameters (key, file system, secrets),
    VPC, security groups, cluster, RStudio task roles."""
    settings = cfg.instances[instance]
    t = new_template("test template")
    stored = add_stored_data(t, cfg, instance)
    key = stored.key
    network = add_network(t, instance, settings, key)
    groups = add_security_groups(t, instance, settings, network.vpc)
    cluster = add_cluster(t, instance, key, settings.logs.retention_days)
    task_roles = instance_module.add_rstudio_task_roles(t, cfg, instance)
    return Groundwork(t, key, stored, network, groups, cluster, task_roles)


def stack_log_group_name(name: str) -> dict[str, Any]:
    """A compute log group's name as rendered: the fixed name, then this stack's id (the last part of AWS::StackId),
    so a rebuilt stack makes a new group next to the kept one."""
    return {"Fn::Join": ["/", [name, {"Fn::Select": [2, {"Fn::Split": ["/", {"Ref": "AWS::StackId"}]}]}]]}


def drop_unused_stored_parameters(t: Template) -> Template:
    """Removes the stored-data parameters (add_stored_data) nothing in a partial template refers to, so that cfn-lint's
    unused-parameter warning judges what the test builds: the whole compute template uses every one of them."""
    rest = json.dumps({part: body for part, body in t.to_dict().items() if part != "Parameters"})
    for name in [KEY_ARN, FILE_SYSTEM_ID, PASSWORD_SECRETS, COOKIE_KEY_SECRETS, BASTION_KEY_SECRET]:
        if name in t.parameters and json.dumps({"Ref": name}) not in rest:
            del t.parameters[name]
    return t
