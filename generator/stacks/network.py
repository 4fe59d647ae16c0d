"""rstudio-fargate network: NS records delegating each instance zone from the existing base zone.

Deployed by the `rstudio-network` StackSet to the network account in the default region, after every
`rstudio-<instance>-zone` StackSet: the name servers of each instance zone live in another account, so the
orchestrator reads them from the zone stack's NameServers output and passes them in as parameters here.
"""

from __future__ import annotations

from typing import NamedTuple

from troposphere import Output, Parameter, Ref, Template
from troposphere.route53 import RecordSetType

from generator.common import new_template
from generator.naming import logical_id
from stacksets import naming
from stacksets.config import Config

# Short for an NS record on purpose: a destroyed and re-created instance zone gets new name servers, and resolvers
# keep the old delegation for up to this long. One hour keeps a rebuild's outage short at negligible query cost.
DELEGATION_TTL_SECONDS = 3600


class Delegation(NamedTuple):
    name_servers: Parameter
    record: RecordSetType
    output: Output


def build(cfg: Config) -> Template:
    t = new_template(__doc__)
    for instance in sorted(cfg.instances):
        add_delegation(t, cfg, instance)
    return t


def add_delegation(t: Template, cfg: Config, instance: str) -> Delegation:
    zone_name = naming.instance_zone_name(instance, cfg.dns.subdomain, cfg.dns.base_domain)
    name_servers = t.add_parameter(
        Parameter(
            logical_id(instance, "NameServers"),
            Type="CommaDelimitedList",
            Description=f"Name servers of {zone_name}: the orchestrator fills this from the NameServers output of "
            f"the {naming.zone_stackset(instance)} StackSet",
        )
    )
    record = t.add_resource(
        RecordSetType(
            logical_id(instance, "Delegation"),
            HostedZoneId=cfg.dns.base_zone_id,
            Name=f"{zone_name}.",
            Type="NS",
            TTL=str(DELEGATION_TTL_SECONDS),
            ResourceRecords=Ref(name_servers),
        )
    )
    output = t.add_output(
        Output(logical_id(instance, "DelegatedName"), Description=f"Zone delegated for instance {instance}",
               Value=zone_name)  # fmt: skip
    )
    return Delegation(name_servers, record, output)
