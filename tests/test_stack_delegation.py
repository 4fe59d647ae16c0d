from __future__ import annotations

from typing import Any

from generator.stacks import delegation
from stacksets.config import Config, parse_config


def _template(cfg: Config, instance: str = "prod") -> dict[str, Any]:
    return delegation.build(cfg, instance).to_dict()


def test_one_delegation_stackset_per_instance(cfg: Config) -> None:
    for instance in ("dev", "prod"):
        template = _template(cfg, instance)
        assert set(template["Resources"]) == {"Delegation"}
        assert set(template["Parameters"]) == {"NameServers"}
        assert template["Outputs"]["DelegatedName"]["Value"] == f"{instance}.analytics.example.com"


def test_ns_record_delegates_the_instance_zone_to_its_parameter(cfg: Config) -> None:
    template = _template(cfg)
    record = template["Resources"]["Delegation"]
    assert record["Type"] == "AWS::Route53::RecordSet"
    assert record["Properties"] == {
        "HostedZoneId": "Z0123456789ABCDEFGHIJ",
        "Name": "prod.analytics.example.com.",
        "Type": "NS",
        "TTL": "3600",
        "ResourceRecords": {"Ref": "NameServers"},
    }
    parameter = template["Parameters"]["NameServers"]
    assert parameter["Type"] == "CommaDelimitedList"
    assert "Default" not in parameter  # a missing value must fail the deploy, not publish an empty delegation
    assert "rstudio-prod-zone" in parameter["Description"]


def test_records_go_into_the_configured_base_zone(example_data: dict[str, Any]) -> None:
    example_data["dns"]["base_zone_id"] = "Z9999999999"
    template = _template(parse_config(example_data))
    assert template["Resources"]["Delegation"]["Properties"]["HostedZoneId"] == "Z9999999999"


def test_adding_an_instance_leaves_the_other_delegations_alone(cfg: Config, example_data: dict[str, Any]) -> None:
    before = _template(cfg)
    example_data["instances"]["alpha"] = {"account": "777777777777", "network": {"vpc_cidr": "10.40.0.0/20"}}
    assert _template(parse_config(example_data)) == before
