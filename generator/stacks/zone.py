"""rstudio-fargate instance zone: the public hosted zone <instance>.<subdomain>.<base_domain> and its name servers.

Deployed by the `rstudio-<instance>-zone` StackSet to the instance's account and region, before the instance
StackSet: the orchestrator passes the NameServers output to `rstudio-network` (which delegates the zone from the
base domain), and the instance StackSet in the same account and region imports the zone id and name.
"""

from __future__ import annotations

from troposphere import Export, GetAtt, Join, Output, Ref, Template
from troposphere.route53 import HostedZone, HostedZoneConfiguration

from generator.common import new_template, retain
from generator.naming import export_name
from stacksets import naming
from stacksets.config import Config


def build(cfg: Config, instance: str) -> Template:
    t = new_template(__doc__)
    zone = add_hosted_zone(t, cfg, instance)
    add_zone_outputs(t, instance, zone)
    return t


def add_hosted_zone(t: Template, cfg: Config, instance: str) -> HostedZone:
    name = naming.instance_zone_name(instance, cfg.dns.subdomain, cfg.dns.base_domain)
    zone = HostedZone(
        "HostedZone",
        Name=name,
        HostedZoneConfig=HostedZoneConfiguration(
            Comment=f"rstudio-fargate instance {instance}: RStudio, Shiny and certificate validation records"
        ),
    )
    # Retained: a new zone gets new name servers, and every resolver caching the old delegation would break.
    return t.add_resource(retain(zone))


def add_zone_outputs(t: Template, instance: str, zone: HostedZone) -> list[Output]:
    stackset = naming.zone_stackset(instance)
    values = {
        "HostedZoneId": (Ref(zone), "Id of the instance zone"),
        "ZoneName": (zone.Name, "Name of the instance zone, without the trailing dot"),
        "NameServers": (Join(",", GetAtt(zone, "NameServers")), "Comma-separated name servers for the delegation"),
    }
    outputs = [
        Output(output, Description=description, Value=value, Export=Export(export_name(stackset, output)))
        for output, (value, description) in values.items()
    ]
    t.add_output(outputs)
    return outputs
