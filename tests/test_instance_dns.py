"""Certificates and alias records: exactly the instance's host names, validated and published in the instance zone."""

from __future__ import annotations

from typing import Any

from generator.instance.dns import NAMES_PER_CERTIFICATE, add_alias_records, add_certificates
from generator.instance.ingress import add_ingress
from stacksets.config import Config, parse_config
from tests.instance_parts import groundwork

PROD_HOSTS = {"shiny.prod.analytics.example.com", "alice.rstudio.prod.analytics.example.com",
              "bob.rstudio.prod.analytics.example.com", "chen.rstudio.prod.analytics.example.com"}  # fmt: skip
DEV_HOSTS = {"shiny.dev.analytics.example.com", "rstudio.dev.analytics.example.com"}


def resources(cfg: Config, instance: str) -> dict[str, Any]:
    g = groundwork(cfg, instance)
    certificates = add_certificates(g.template, cfg, instance)
    ingress = add_ingress(g.template, cfg, instance, g.network, g.groups, certificates)
    add_alias_records(g.template, cfg, instance, ingress.load_balancer)
    return g.template.to_dict()["Resources"]


def of_type(found: dict[str, Any], kind: str) -> dict[str, Any]:
    return {name: r["Properties"] for name, r in found.items() if r["Type"] == kind}


def names(certificate: dict[str, Any]) -> list[str]:
    return [certificate["DomainName"], *certificate.get("SubjectAlternativeNames", [])]


def with_users(example_data: dict[str, Any], count: int) -> dict[str, Any]:
    users = example_data["instances"]["prod"]["users"]
    for index in range(count):
        users[f"user{index:02d}"] = {"email": f"user{index}@example.com", "uid": 4000 + index}
    return example_data


def test_certificates_cover_exactly_the_host_names_with_dns_validation_in_the_imported_zone(cfg):
    for instance, hosts in (("prod", PROD_HOSTS), ("dev", DEV_HOSTS)):
        certificates = of_type(resources(cfg, instance), "AWS::CertificateManager::Certificate")
        (certificate,) = certificates.values()
        assert sorted(names(certificate)) == sorted(hosts)
        assert certificate["ValidationMethod"] == "DNS"
        zone = {"Fn::ImportValue": f"rstudio-{instance}-zone-HostedZoneId"}
        assert certificate["DomainValidationOptions"] == [{"DomainName": h, "HostedZoneId": zone}
                                                          for h in names(certificate)]  # fmt: skip


def test_many_users_are_split_over_certificates_that_all_reach_the_https_listener(example_data):
    cfg = parse_config(with_users(example_data, 20))
    found = resources(cfg, "prod")
    certificates = of_type(found, "AWS::CertificateManager::Certificate")
    covered = [name for certificate in certificates.values() for name in names(certificate)]
    hosts = PROD_HOSTS | {f"user{i:02d}.rstudio.prod.analytics.example.com" for i in range(20)}
    assert sorted(covered) == sorted(hosts)  # every host once, no wildcard
    assert all(len(names(c)) <= NAMES_PER_CERTIFICATE for c in certificates.values())
    served = [found["HttpsListener"]["Properties"]["Certificates"][0]["CertificateArn"]]
    served += [c["Certificates"][0]["CertificateArn"]
               for c in of_type(found, "AWS::ElasticLoadBalancingV2::ListenerCertificate").values()]  # fmt: skip
    assert sorted(ref["Ref"] for ref in served) == sorted(certificates)


def test_a_user_with_the_next_uid_changes_only_the_last_certificate(example_data):
    kind = "AWS::CertificateManager::Certificate"
    before = of_type(resources(parse_config(with_users(example_data, 20)), "prod"), kind)
    example_data["instances"]["prod"]["users"]["aaron"] = {"email": "aaron@example.com", "uid": 4100}
    after = of_type(resources(parse_config(example_data), "prod"), kind)
    assert sorted(after) == sorted(before) == ["Certificate", "User06RStudioCertificate", "User16RStudioCertificate"]
    assert [name for name in before if before[name] != after[name]] == ["User16RStudioCertificate"]
    assert "aaron.rstudio.prod.analytics.example.com" in names(after["User16RStudioCertificate"])


def test_every_host_gets_a_and_aaaa_aliases_to_the_load_balancer(cfg):
    for instance, hosts in (("prod", PROD_HOSTS), ("dev", DEV_HOSTS)):
        groups = of_type(resources(cfg, instance), "AWS::Route53::RecordSetGroup")
        records = [record for group in groups.values() for record in group["RecordSets"]]
        assert sorted((r["Name"], r["Type"]) for r in records) == sorted((h, t) for h in hosts for t in ("A", "AAAA"))
        for group in groups.values():
            assert group["HostedZoneId"] == {"Fn::ImportValue": f"rstudio-{instance}-zone-HostedZoneId"}
        for record in records:
            assert record["AliasTarget"]["DNSName"] == {"Fn::GetAtt": ["LoadBalancer", "DNSName"]}
            assert record["AliasTarget"]["HostedZoneId"] == {"Fn::GetAtt": ["LoadBalancer", "CanonicalHostedZoneID"]}


def test_record_ids_come_from_the_server_keys(cfg):
    assert sorted(of_type(resources(cfg, "prod"), "AWS::Route53::RecordSetGroup")) == [
        "AliceRStudioDnsRecords", "BobRStudioDnsRecords", "ChenRStudioDnsRecords", "ShinyDnsRecords"]  # fmt: skip
    assert sorted(of_type(resources(cfg, "dev"), "AWS::Route53::RecordSetGroup")) == [
        "RStudioDnsRecords", "ShinyDnsRecords"]  # fmt: skip
