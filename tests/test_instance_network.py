"""The instance VPC: subnet layout, NAT modes, routes and flow logs."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from generator.instance.network import subnet_ranges
from generator.stacks.instance import build
from stacksets.config import parse_config
from tests.instance_parts import IMAGE_TAGS, stack_log_group_name


def resources_of(data: dict[str, Any], instance: str) -> dict[str, Any]:
    return build(parse_config(data), instance, IMAGE_TAGS).to_dict()["Resources"]


def of_type(resources: dict[str, Any], kind: str) -> dict[str, Any]:
    return {name: r for name, r in resources.items() if r["Type"] == kind}


@pytest.mark.parametrize("cidr", ["10.0.0.0/16", "10.20.0.0/20", "192.168.7.0/24"])
@pytest.mark.parametrize("zones", [2, 3, 4])
def test_subnets_fit_the_vpc_without_overlap_and_are_big_enough_for_an_alb(cidr, zones):
    private, public = subnet_ranges(cidr, zones)
    networks = [ipaddress.IPv4Network(net) for net in private + public]
    assert len(private) == len(public) == zones
    assert all(net.subnet_of(ipaddress.IPv4Network(cidr)) for net in networks)
    assert not any(a.overlaps(b) for i, a in enumerate(networks) for b in networks[i + 1:])
    assert all(net.prefixlen <= 27 for net in networks)


def test_adding_an_availability_zone_keeps_existing_subnets():
    two_private, two_public = subnet_ranges("10.30.0.0/16", 2)
    three_private, three_public = subnet_ranges("10.30.0.0/16", 3)
    assert three_private[:2] == two_private and three_public[:2] == two_public


def test_prod_has_three_zones_with_a_nat_gateway_each(example_data):
    resources = resources_of(example_data, "prod")
    subnets = of_type(resources, "AWS::EC2::Subnet")
    assert sorted(subnets) == sorted(f"{kind}Subnet{z}" for kind in ("Public", "Private") for z in "ABC")
    assert sorted(of_type(resources, "AWS::EC2::NatGateway")) == ["NatGatewayA", "NatGatewayB", "NatGatewayC"]
    for zone in "ABC":
        route = resources[f"PrivateDefaultRoute{zone}"]["Properties"]
        assert route["NatGatewayId"] == {"Ref": f"NatGateway{zone}"}  # traffic stays in its AZ
        assert resources[f"NatGateway{zone}"]["Properties"]["SubnetId"] == {"Ref": f"PublicSubnet{zone}"}


def test_single_nat_mode_routes_every_zone_through_one_gateway(example_data):
    resources = resources_of(example_data, "dev")
    assert list(of_type(resources, "AWS::EC2::NatGateway")) == ["NatGatewayA"]
    for zone in "AB":
        assert resources[f"PrivateDefaultRoute{zone}"]["Properties"]["NatGatewayId"] == {"Ref": "NatGatewayA"}


def test_subnets_use_the_configured_range_and_get_no_automatic_public_ips(example_data):
    resources = resources_of(example_data, "dev")
    assert resources["Vpc"]["Properties"]["CidrBlock"] == "10.20.0.0/20"
    for subnet in of_type(resources, "AWS::EC2::Subnet").values():
        assert subnet["Properties"]["MapPublicIpOnLaunch"] is False
    assert resources["PrivateSubnetA"]["Properties"]["CidrBlock"] == "10.20.0.0/23"
    assert resources["PublicSubnetA"]["Properties"]["CidrBlock"] == "10.20.8.0/23"


def test_public_subnets_route_to_the_internet_gateway_and_private_ones_do_not(example_data):
    resources = resources_of(example_data, "prod")
    assert resources["PublicDefaultRoute"]["Properties"]["GatewayId"] == {"Ref": "InternetGateway"}
    associations = of_type(resources, "AWS::EC2::SubnetRouteTableAssociation")
    table_of = {
        a["Properties"]["SubnetId"]["Ref"]: a["Properties"]["RouteTableId"]["Ref"] for a in associations.values()
    }
    assert {table_of[f"PublicSubnet{z}"] for z in "ABC"} == {"PublicRouteTable"}
    assert [table_of[f"PrivateSubnet{z}"] for z in "ABC"] == [f"PrivateRouteTable{z}" for z in "ABC"]


def test_flow_logs_capture_all_traffic_into_an_encrypted_retained_log_group(example_data):
    resources = resources_of(example_data, "prod")
    flow_log = resources["FlowLog"]["Properties"]
    assert flow_log["TrafficType"] == "ALL" and flow_log["ResourceId"] == {"Ref": "Vpc"}
    group = resources["FlowLogGroup"]
    assert group["Properties"]["LogGroupName"] == stack_log_group_name("/rstudio/prod/vpc-flow-logs")
    assert group["Properties"]["KmsKeyId"] == {"Ref": "InstanceKeyArn"}
    assert group["Properties"]["RetentionInDays"] == 365
    assert group["DeletionPolicy"] == "RetainExceptOnCreate"
    assert group["UpdateReplacePolicy"] == "Retain"
    [statement] = resources["FlowLogRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    assert statement["Resource"] == [{"Fn::GetAtt": ["FlowLogGroup", "Arn"]}]
