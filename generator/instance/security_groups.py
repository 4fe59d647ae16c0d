"""Security groups: the ALB takes HTTPS (and HTTP, to redirect) from anywhere; tasks take traffic only from the ALB.

Rules are separate resources because the groups refer to each other (ALB egress to the tasks, task ingress from the
ALB); inline rules would make a dependency cycle. WAF, not the security group, decides which clients may use the ALB.
"""

from __future__ import annotations

from typing import NamedTuple

from troposphere import GetAtt, Ref, Tags, Template
from troposphere.ec2 import VPC, SecurityGroup, SecurityGroupEgress, SecurityGroupIngress

from generator.common import skip_checkov
from generator.naming import logical_id
from stacksets.config import Instance

RSTUDIO_PORT = 8787
SHINY_PORT = 3838
SSH_PORT = 22
HTTPS_PORT = 443
HTTP_PORT = 80
ANYWHERE = {"IPv4": "0.0.0.0/0", "IPv6": "::/0"}


class SecurityGroups(NamedTuple):
    alb: SecurityGroup
    rstudio: SecurityGroup
    shiny: SecurityGroup | None
    """None when shiny.enabled is false."""
    bastion: SecurityGroup | None


def add_group(t: Template, title: str, instance: str, purpose: str, vpc: VPC) -> SecurityGroup:
    # Any explicit egress rule replaces the default allow-all; this one matches nothing (the AWS CDK's idiom), so each
    # group can reach exactly what its separate egress rules list.
    return t.add_resource(SecurityGroup(
        title, GroupDescription=f"RStudio instance {instance}: {purpose}", VpcId=Ref(vpc),
        SecurityGroupEgress=[{"IpProtocol": "icmp", "FromPort": 252, "ToPort": 86, "CidrIp": "255.255.255.255/32",
                              "Description": "no egress except the rules below"}],
        Tags=Tags(Name=f"rstudio-{instance}-{title.removesuffix('SecurityGroup').lower()}"),
    ))  # fmt: skip


def _tcp(port: int) -> dict[str, object]:
    return {"IpProtocol": "tcp", "FromPort": port, "ToPort": port}


def allow(t: Template, title: str, group: SecurityGroup, port: int, description: str, *,
          source: SecurityGroup | None = None, cidr: str | None = None) -> SecurityGroupIngress:  # fmt: skip
    """Ingress on one TCP port from another group or one CIDR (IPv4 or IPv6)."""
    origin: dict[str, object] = {"SourceSecurityGroupId": GetAtt(source, "GroupId")} if source else (
        {"CidrIpv6": cidr} if cidr and ":" in cidr else {"CidrIp": cidr})  # fmt: skip
    return t.add_resource(SecurityGroupIngress(title, GroupId=GetAtt(group, "GroupId"), Description=description,
                                               **_tcp(port), **origin))  # fmt: skip


def allow_out(t: Template, title: str, group: SecurityGroup, port: int, description: str, *,
              destination: SecurityGroup | None = None, cidr: str | None = None) -> SecurityGroupEgress:  # fmt: skip
    """Egress on one TCP port to another group or one CIDR (IPv4 or IPv6)."""
    target: dict[str, object] = {"DestinationSecurityGroupId": GetAtt(destination, "GroupId")} if destination else (
        {"CidrIpv6": cidr} if cidr and ":" in cidr else {"CidrIp": cidr})  # fmt: skip
    return t.add_resource(SecurityGroupEgress(title, GroupId=GetAtt(group, "GroupId"), Description=description,
                                              **_tcp(port), **target))  # fmt: skip


def add_security_groups(t: Template, instance: str, settings: Instance, vpc: VPC) -> SecurityGroups:
    alb = add_group(t, "AlbSecurityGroup", instance, "load balancer", vpc)
    rstudio = add_group(t, "RStudioSecurityGroup", instance, "RStudio tasks", vpc)
    shiny = add_group(t, "ShinySecurityGroup", instance, "Shiny tasks", vpc) if settings.shiny.enabled else None
    tasks = [("RStudio", rstudio)] + ([("Shiny", shiny)] if shiny is not None else [])
    bastion = add_group(t, "BastionSecurityGroup", instance, "SSH bastion", vpc) if settings.bastion.enabled else None

    for family, cidr in ANYWHERE.items():
        allow(t, f"AlbHttpsFrom{family}", alb, HTTPS_PORT, "HTTPS from clients (WAF filters them)", cidr=cidr)
        http = allow(t, f"AlbHttpFrom{family}", alb, HTTP_PORT, "HTTP, redirected to HTTPS", cidr=cidr)
        skip_checkov(http, CKV_AWS_260="the HTTP listener only answers with a redirect to HTTPS")
    allow_out(t, "AlbToRStudio", alb, RSTUDIO_PORT, "RStudio targets", destination=rstudio)
    allow(t, "RStudioFromAlb", rstudio, RSTUDIO_PORT, "RStudio from the load balancer", source=alb)
    if shiny is not None:
        allow_out(t, "AlbToShiny", alb, SHINY_PORT, "Shiny targets", destination=shiny)
        allow(t, "ShinyFromAlb", shiny, SHINY_PORT, "Shiny from the load balancer", source=alb)

    # Tasks reach AWS APIs, ECR, CRAN and package mirrors through the NAT gateways: HTTPS, plus HTTP because Debian
    # and Ubuntu package mirrors serve signed packages over plain HTTP.
    for task, group in tasks:
        for family, cidr in ANYWHERE.items():
            allow_out(t, f"{task}HttpsTo{family}", group, HTTPS_PORT, "AWS APIs, ECR, package repositories",
                      cidr=cidr)  # fmt: skip
            allow_out(t, f"{task}HttpTo{family}", group, HTTP_PORT, "package mirrors", cidr=cidr)

    if bastion is not None:
        for cidr in settings.bastion.allowed_cidrs:
            allow(t, logical_id("BastionSshFrom", cidr), bastion, SSH_PORT, f"SSH from {cidr}", cidr=cidr)
        for task, group in tasks:
            allow(t, f"{task}SshFromBastion", group, SSH_PORT, "SSH from the bastion only", source=bastion)
            allow_out(t, f"BastionSshTo{task}", bastion, SSH_PORT, f"SSH to {task} tasks", destination=group)
        allow_out(t, "BastionHttpsToIPv4", bastion, HTTPS_PORT, "ECR, Secrets Manager, logs", cidr=ANYWHERE["IPv4"])
    return SecurityGroups(alb, rstudio, shiny, bastion)
