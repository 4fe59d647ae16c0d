"""rstudio-fargate delegation: the NS record delegating one instance zone from the existing base zone.

Deployed by the `rstudio-<instance>-delegation` StackSet to the network account in the default region, after the
instance's `rstudio-<instance>-zone` StackSet: the zone's name servers live in another account, so the orchestrator
reads them from the zone stack's NameServers output and passes them in as a parameter here. One StackSet per
instance: a zone that fails to deploy holds up its own instance only.
"""

from __future__ import annotations

from typing import NamedTuple

from troposphere import Output, Parameter, Ref, Template
from troposphere.route53 import RecordSetType

from generator.common import new_template
from stacksets import naming
from stacksets.config import Config

# Short for an NS record on purpose: a destroyed and re-created instance zone gets new name servers, and resolvers
# keep the old delegation for up to this long. One hour keeps a rebuild's outage short at negligible query cost.
DELEGATION_TTL_SECONDS = 3600
NAME_SERVERS_PARAMETER = "NameServers"


class Delegation(NamedTuple):
    name_servers: Parameter
    record: RecordSetType
    output: Output


def build(cfg: Config, instance: str) -> Template:
    if instance not in cfg.instances:
        raise ValueError(f"unknown instance {instance!r}; the config has {', '.join(sorted(cfg.instances))}")
    t = new_template(__doc__)
    add_delegation(t, cfg, instance)
    return t


def add_delegation(t: Template, cfg: Config, instance: str) -> Delegation:
    zone_name = naming.instance_zone_name(instance, cfg.dns.subdomain, cfg.dns.base_domain)
    name_servers = t.add_parameter(
        Parameter(
            NAME_SERVERS_PARAMETER,
            Type="CommaDelimitedList",
            Description=f"Name servers of {zone_name}: the orchestrator fills this from the NameServers output of "
            f"the {naming.zone_stackset(instance)} StackSet",
        )
    )
    record = t.add_resource(
        RecordSetType(
            "Delegation",
            HostedZoneId=cfg.dns.base_zone_id,
            Name=f"{zone_name}.",
            Type="NS",
            TTL=str(DELEGATION_TTL_SECONDS),
            ResourceRecords=Ref(name_servers),
        )
    )
    output = t.add_output(Output("DelegatedName", Description=f"Zone delegated for instance {instance}",
                                 Value=zone_name))  # fmt: skip
    return Delegation(name_servers, record, output)
