"""TLS certificates and alias records for the instance's host names, in the instance zone the `-zone` stack exports.

Certificates list the exact host names (shiny.<zone>, and rstudio.<zone> or every <user>.rstudio.<zone>), never a
wildcard: a certificate then vouches for nothing the ALB does not serve. ACM allows 10 names per certificate by
default, so per-user instances with more users get several certificates: the hosts are ordered by the user's uid
(shiny first), because new users usually get the next uid, so adding one touches only the last certificate. A changed
certificate is replaced without downtime: CloudFormation issues the new one before the listener switches, and ACM
validation records are per name and stay in the zone. Certificate Transparency logs publish every name, user names
included; a `*.rstudio.<zone>` wildcard would hide them, but would also vouch for hosts that do not exist.
DNS validation needs the zone delegated first (the `network` StackSet does that before this one deploys); otherwise
the stack waits on ACM.
"""

from __future__ import annotations

from typing import NamedTuple

from troposphere import GetAtt, ImportValue, Tags, Template
from troposphere.certificatemanager import Certificate, DomainValidationOption
from troposphere.elasticloadbalancingv2 import LoadBalancer
from troposphere.route53 import AliasTarget, RecordSet, RecordSetGroup

from generator.instance.servers import rstudio_servers, shiny_host
from generator.naming import export_name, logical_id
from stacksets import naming
from stacksets.config import Config

# ACM's default quota of domain names per certificate (adjustable, but an instance must deploy without a ticket).
NAMES_PER_CERTIFICATE = 10


class Certificates(NamedTuple):
    default: Certificate
    """The HTTPS listener's default certificate; it covers the Shiny host when Shiny is enabled."""
    extra: list[Certificate]
    """Further certificates the listener serves by SNI (per-user instances with more than 9 users)."""


def zone_id(instance: str) -> ImportValue:
    return ImportValue(export_name(naming.zone_stackset(instance), "HostedZoneId"))


def host_names(cfg: Config, instance: str) -> list[tuple[str, str]]:
    """(key, host) for every host the ALB serves: Shiny first (when enabled), then RStudio servers by their user's
    uid."""
    users = cfg.instances[instance].users
    servers = sorted(rstudio_servers(cfg, instance), key=lambda s: users[s.key].uid if s.key in users else 0)
    shiny = [("Shiny", shiny_host(cfg, instance))] if cfg.instances[instance].shiny.enabled else []
    return shiny + [(server.key, server.host) for server in servers]


def certificate_groups(cfg: Config, instance: str) -> dict[str, list[str]]:
    """Logical id -> host names. The first group is "Certificate"; later ones are named after their first server."""
    hosts = host_names(cfg, instance)
    groups = {}
    for start in range(0, len(hosts), NAMES_PER_CERTIFICATE):
        chunk = hosts[start : start + NAMES_PER_CERTIFICATE]
        title = "Certificate" if start == 0 else logical_id(chunk[0][0], "RStudio", "Certificate")
        groups[title] = [host for _, host in chunk]
    return groups


def add_certificates(t: Template, cfg: Config, instance: str) -> Certificates:
    made = []
    for title, hosts in certificate_groups(cfg, instance).items():
        alternatives = {"SubjectAlternativeNames": hosts[1:]} if len(hosts) > 1 else {}
        made.append(t.add_resource(Certificate(
            title,
            DomainName=hosts[0],
            **alternatives,
            ValidationMethod="DNS",
            # CloudFormation writes each validation CNAME into the instance zone and waits for ACM to issue.
            DomainValidationOptions=[DomainValidationOption(DomainName=host, HostedZoneId=zone_id(instance))
                                     for host in hosts],
            Tags=Tags(Name=f"{naming.instance_stackset(instance)}-{title}"),
        )))  # fmt: skip
    return Certificates(made[0], made[1:])


def add_alias_records(t: Template, cfg: Config, instance: str, load_balancer: LoadBalancer) -> list[RecordSetGroup]:
    """A and AAAA aliases (the ALB is dual-stack), one group per host so a host's two records change together."""
    target = AliasTarget(DNSName=GetAtt(load_balancer, "DNSName"),
                         HostedZoneId=GetAtt(load_balancer, "CanonicalHostedZoneID"),
                         EvaluateTargetHealth=False)  # fmt: skip
    servers = {server.key: server for server in rstudio_servers(cfg, instance)}
    groups = []
    for key, host in host_names(cfg, instance):
        title = servers[key].id("DnsRecords") if key in servers else logical_id(key, "DnsRecords")
        groups.append(t.add_resource(RecordSetGroup(
            title,
            HostedZoneId=zone_id(instance),
            RecordSets=[RecordSet(Name=host, Type=kind, AliasTarget=target) for kind in ("A", "AAAA")],
        )))  # fmt: skip
    return groups
