from __future__ import annotations

from typing import Any

from generator.stacks import zone
from stacksets.config import Config, parse_config


def test_zone_is_named_after_the_instance(cfg: Config) -> None:
    for instance, expected in (("dev", "dev.analytics.example.com"), ("prod", "prod.analytics.example.com")):
        resources = zone.build(cfg, instance).to_dict()["Resources"]
        assert list(resources) == ["HostedZone"]
        hosted_zone = resources["HostedZone"]
        assert hosted_zone["Type"] == "AWS::Route53::HostedZone"
        assert hosted_zone["Properties"]["Name"] == expected
        assert f"instance {instance}:" in hosted_zone["Properties"]["HostedZoneConfig"]["Comment"]
        assert (hosted_zone["DeletionPolicy"], hosted_zone["UpdateReplacePolicy"]) == ("RetainExceptOnCreate",
                                                                                     "Retain")  # fmt: skip


def test_zone_name_follows_dns_config(example_data: dict[str, Any]) -> None:
    example_data["dns"]["subdomain"] = "rs"
    example_data["dns"]["base_domain"] = "corp.example.org"
    resources = zone.build(parse_config(example_data), "prod").to_dict()["Resources"]
    assert resources["HostedZone"]["Properties"]["Name"] == "prod.rs.corp.example.org"


def test_outputs_are_exported_under_fixed_names(cfg: Config) -> None:
    outputs = zone.build(cfg, "prod").to_dict()["Outputs"]
    assert {name: output["Export"]["Name"] for name, output in outputs.items()} == {
        "HostedZoneId": "rstudio-prod-zone-HostedZoneId",
        "ZoneName": "rstudio-prod-zone-ZoneName",
        "NameServers": "rstudio-prod-zone-NameServers",
    }
    assert outputs["HostedZoneId"]["Value"] == {"Ref": "HostedZone"}
    assert outputs["ZoneName"]["Value"] == "prod.analytics.example.com"
    assert outputs["NameServers"]["Value"] == {"Fn::Join": [",", {"Fn::GetAtt": ["HostedZone", "NameServers"]}]}


def test_export_names_differ_per_instance(cfg: Config) -> None:
    exports = {
        output["Export"]["Name"]
        for instance in cfg.instances
        for output in zone.build(cfg, instance).to_dict()["Outputs"].values()
    }
    assert len(exports) == 3 * len(cfg.instances)
