"""The instance VPC: public and private subnets in each AZ, NAT, routes, and flow logs.

Private subnets take quarters of the lower half of the VPC range (tasks and mount targets live there), public subnets
quarters of the upper half: even in a /24 VPC that leaves /27 public subnets, the smallest an ALB accepts. Subnet
logical ids
carry the AZ letter because the AZ, not a list position, is what identifies a subnet.
"""

from __future__ import annotations

import ipaddress
import string
from typing import NamedTuple

import awacs.logs
from troposphere import Cidr, GetAtt, GetAZs, Parameter, Ref, Select, Tags, Template
from troposphere.ec2 import (
    EIP,
    VPC,
    FlowLog,
    InternetGateway,
    NatGateway,
    Route,
    RouteTable,
    Subnet,
    SubnetRouteTableAssociation,
    VPCCidrBlock,
    VPCGatewayAttachment,
)
from troposphere.iam import Policy as RolePolicy
from troposphere.iam import Role

from generator.iam import Allow, Statement, document, regional_arn, service_trust
from generator.instance.tasks import add_log_group
from stacksets.config import Instance, Nat

# The Amazon-provided IPv6 block is a /56; public subnets get /64s (the only size AWS allows for subnets) from it.
IPV6_SUBNETS = 4
IPV6_SUBNET_BITS = "64"


class Network(NamedTuple):
    vpc: VPC
    public_subnets: list[Subnet]
    private_subnets: list[Subnet]
    # what needs the internet gateway attached must DependsOn it: CloudFormation orders only by references, and
    # nothing references the attachment ("DependsOn attribute", the Elastic IP example)
    attachment: VPCGatewayAttachment
    # what runs in the private subnets and reaches the internet (image pulls, the ECS agent) must DependsOn these:
    # the default routes through NAT and their subnet associations, which nothing running there references
    egress: list[str]


def subnet_ranges(vpc_cidr: str, zones: int) -> tuple[list[str], list[str]]:
    """(private, public) CIDRs, one per AZ, carved so that adding an AZ never moves an existing subnet."""
    vpc = ipaddress.IPv4Network(vpc_cidr)
    lower, upper = vpc.subnets(prefixlen_diff=1)
    private = list(lower.subnets(prefixlen_diff=2))[:zones]
    public = list(upper.subnets(prefixlen_diff=2))[:zones]
    return [str(net) for net in private], [str(net) for net in public]


def add_network(t: Template, instance: str, settings: Instance, key: Parameter) -> Network:
    vpc = t.add_resource(VPC("Vpc", CidrBlock=settings.network.vpc_cidr, EnableDnsHostnames=True,
                             EnableDnsSupport=True, Tags=Tags(Name=f"rstudio-{instance}")))  # fmt: skip
    gateway = t.add_resource(InternetGateway("InternetGateway", Tags=Tags(Name=f"rstudio-{instance}")))
    attachment = t.add_resource(
        VPCGatewayAttachment("InternetGatewayAttachment", VpcId=Ref(vpc), InternetGatewayId=Ref(gateway))
    )
    # An Amazon-provided IPv6 block so the ALB can be dual-stack (IPv6 clients, IPv6 allowlists); only the public
    # subnets get IPv6 ranges, tasks stay IPv4-only behind the NAT gateways.
    ipv6 = t.add_resource(VPCCidrBlock("VpcIpv6CidrBlock", VpcId=Ref(vpc), AmazonProvidedIpv6CidrBlock=True))
    private_ranges, public_ranges = subnet_ranges(settings.network.vpc_cidr, settings.network.availability_zones)
    public = add_public_subnets(t, instance, vpc, public_ranges, gateway, attachment, ipv6)
    private, egress = add_private_subnets(t, instance, vpc, private_ranges, public, settings.network.nat, attachment)
    add_flow_logs(t, instance, vpc, key, settings.logs.retention_days)
    return Network(vpc, public, private, attachment, egress)


def _zone(index: int) -> tuple[str, Select]:
    return string.ascii_uppercase[index], Select(index, GetAZs(""))


def add_public_subnets(t: Template, instance: str, vpc: VPC, ranges: list[str], gateway: InternetGateway,
                       attachment: VPCGatewayAttachment, ipv6: VPCCidrBlock) -> list[Subnet]:  # fmt: skip
    """One route table for all public subnets: their only route out is the internet gateway."""
    table = t.add_resource(RouteTable("PublicRouteTable", VpcId=Ref(vpc), Tags=Tags(Name=f"rstudio-{instance}-public")))
    t.add_resource(Route("PublicDefaultRoute", RouteTableId=Ref(table), DestinationCidrBlock="0.0.0.0/0",
                         GatewayId=Ref(gateway), DependsOn=[attachment.title]))  # fmt: skip
    t.add_resource(Route("PublicDefaultIpv6Route", RouteTableId=Ref(table), DestinationIpv6CidrBlock="::/0",
                         GatewayId=Ref(gateway), DependsOn=[attachment.title]))  # fmt: skip
    # /64 ranges carved from the VPC's /56 by AZ position, like the IPv4 ranges: adding an AZ moves none of them.
    ipv6_ranges = Cidr(Select(0, GetAtt(vpc, "Ipv6CidrBlocks")), IPV6_SUBNETS, IPV6_SUBNET_BITS)
    subnets = []
    for index, cidr in enumerate(ranges):
        letter, zone = _zone(index)
        # No automatic public IPs: only what asks for one (NAT, ALB, bastion task) is reachable from outside.
        subnet = t.add_resource(
            Subnet(f"PublicSubnet{letter}", VpcId=Ref(vpc), CidrBlock=cidr, AvailabilityZone=zone,
                   Ipv6CidrBlock=Select(index, ipv6_ranges), AssignIpv6AddressOnCreation=False,
                   MapPublicIpOnLaunch=False, Tags=Tags(Name=f"rstudio-{instance}-public-{letter.lower()}"),
                   DependsOn=[ipv6.title])
        )  # fmt: skip
        t.add_resource(SubnetRouteTableAssociation(f"PublicSubnet{letter}RouteTableAssociation",
                                                   SubnetId=Ref(subnet), RouteTableId=Ref(table)))  # fmt: skip
        subnets.append(subnet)
    return subnets


def add_private_subnets(t: Template, instance: str, vpc: VPC, ranges: list[str], public: list[Subnet],
                        nat: Nat, attachment: VPCGatewayAttachment) -> tuple[list[Subnet], list[str]]:  # fmt: skip
    """A route table per AZ, so per_az NAT keeps traffic in its zone and single NAT can grow into per_az. Returns
    the subnets and the titles of what gives them their way out (Network.egress)."""
    gateways = []
    for subnet in public if nat is Nat.per_az else public[:1]:
        letter = subnet.title.removeprefix("PublicSubnet")
        # an address in a VPC, and a public NAT gateway, need the VPC's internet gateway attached first
        address = t.add_resource(EIP(f"NatAddress{letter}", Domain="vpc", Tags=Tags(Name=f"rstudio-{instance}-nat"),
                                     DependsOn=[attachment.title]))  # fmt: skip
        gateways.append(t.add_resource(
            NatGateway(f"NatGateway{letter}", AllocationId=GetAtt(address, "AllocationId"), SubnetId=Ref(subnet),
                       Tags=Tags(Name=f"rstudio-{instance}-{letter.lower()}"), DependsOn=[attachment.title])
        ))  # fmt: skip
    subnets, egress = [], []
    for index, cidr in enumerate(ranges):
        letter, zone = _zone(index)
        gateway = gateways[index] if nat is Nat.per_az else gateways[0]
        table = t.add_resource(RouteTable(f"PrivateRouteTable{letter}", VpcId=Ref(vpc),
                                          Tags=Tags(Name=f"rstudio-{instance}-private-{letter.lower()}")))  # fmt: skip
        egress.append(t.add_resource(Route(f"PrivateDefaultRoute{letter}", RouteTableId=Ref(table),
                                           DestinationCidrBlock="0.0.0.0/0", NatGatewayId=Ref(gateway))).title)
        subnet = t.add_resource(
            Subnet(f"PrivateSubnet{letter}", VpcId=Ref(vpc), CidrBlock=cidr, AvailabilityZone=zone,
                   MapPublicIpOnLaunch=False, Tags=Tags(Name=f"rstudio-{instance}-private-{letter.lower()}"))
        )  # fmt: skip
        egress.append(t.add_resource(SubnetRouteTableAssociation(
            f"PrivateSubnet{letter}RouteTableAssociation", SubnetId=Ref(subnet), RouteTableId=Ref(table))).title)
        subnets.append(subnet)
    return subnets, egress


def add_flow_logs(t: Template, instance: str, vpc: VPC, key: Parameter, retention_days: int) -> FlowLog:
    """All VPC traffic, accepted and rejected, into a KMS-encrypted log group: the network's audit trail."""
    log_group = add_log_group(t, "FlowLogGroup", f"/rstudio/{instance}/vpc-flow-logs", key, retention_days)
    permissions = document(
        Statement(Effect=Allow, Resource=[GetAtt(log_group, "Arn")],
                  Action=[awacs.logs.CreateLogStream, awacs.logs.PutLogEvents, awacs.logs.DescribeLogStreams]),
    )  # fmt: skip
    role = t.add_resource(
        Role("FlowLogRole", Description=f"VPC flow logs of RStudio instance {instance}",
             AssumeRolePolicyDocument=service_trust("vpc-flow-logs.amazonaws.com",
                                                    regional_arn("ec2", "vpc-flow-log/*")),
             Policies=[RolePolicy(PolicyName="write-flow-logs", PolicyDocument=permissions)])
    )  # fmt: skip
    return t.add_resource(
        FlowLog("FlowLog", ResourceId=Ref(vpc), ResourceType="VPC", TrafficType="ALL",
                LogDestinationType="cloud-watch-logs", LogGroupName=Ref(log_group),
                DeliverLogsPermissionArn=GetAtt(role, "Arn"), MaxAggregationInterval=60)
    )  # fmt: skip



