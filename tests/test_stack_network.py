from __future__ import annotations

from typing import Any

from generator.stacks import network
from stacksets.config import Config, parse_config


def _template(cfg: Config) -> dict[str, Any]:
    return network.build(cfg).to_dict()


def test_one_delegation_per_instance(cfg: Config) -> None:
    template = _template(cfg)
    assert set(template["Resources"]) == {"DevDelegation", "ProdDelegation"}
    assert set(template["Parameters"]) == {"DevNameServers", "ProdNameServers"}
    assert template["Outputs"]["ProdDelegatedName"]["Value"] == "prod.analytics.example.com"


def test_ns_record_delegates_the_instance_zone_to_its_parameter(cfg: Config) -> None:
    template = _template(cfg)
    record = template["Resources"]["ProdDelegation"]
    assert record["Type"] == "AWS::Route53::RecordSet"
    assert record["Properties"] == {
        "HostedZoneId": "Z0123456789ABCDEFGHIJ",
        "Name": "prod.analytics.example.com.",
        "Type": "NS",
        "TTL": "3600",
        "ResourceRecords": {"Ref": "ProdNameServers"},
    }
    parameter = template["Parameters"]["ProdNameServers"]
    assert parameter["Type"] == "CommaDelimitedList"
    assert "Default" not in parameter  # a missing value must fail the deploy, not publish an empty delegation
    assert "rstudio-prod-zone" in parameter["Description"]


def test_records_go_into_the_configured_base_zone(example_data: dict[str, Any]) -> None:
    example_data["dns"]["base_zone_id"] = "Z9999999999"
    template = _template(parse_config(example_data))
    assert {r["Properties"]["HostedZoneId"] for r in template["Resources"].values()} == {"Z9999999999"}


def test_adding_an_instance_keeps_existing_logical_ids(cfg: Config, example_data: dict[str, Any]) -> None:
    before = _template(cfg)
    # "alpha" sorts before the existing instances: list positions would shift, config keys do not.
    example_data["instances"]["alpha"] = {"account": "777777777777", "network": {"vpc_cidr": "10.40.0.0/20"}}
    after = _template(parse_config(example_data))
    for section in ("Parameters", "Resources", "Outputs"):
        assert {key: after[section][key] for key in before[section]} == before[section]
    assert after["Resources"]["AlphaDelegation"]["Properties"]["Name"] == "alpha.analytics.example.com."
    assert after["Resources"]["AlphaDelegation"]["Properties"]["ResourceRecords"] == {"Ref": "AlphaNameServers"}
