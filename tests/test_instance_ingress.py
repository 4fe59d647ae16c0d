"""The ALB: host rules per RStudio server and for Shiny, TLS only, health checks and stickiness RStudio/Shiny need."""

from __future__ import annotations

from typing import Any

import pytest

from generator.instance.dns import add_alias_records, add_certificates
from generator.instance.ingress import Ingress, add_ingress
from generator.instance.waf import add_waf
from stacksets.config import Config, parse_config
from stacksets.template_checks import lint_template
from tests.instance_parts import drop_unused_stored_parameters, groundwork

PROD_RSTUDIO = {"alice": "alice.rstudio.prod.analytics.example.com", "bob": "bob.rstudio.prod.analytics.example.com",
                "chen": "chen.rstudio.prod.analytics.example.com"}  # fmt: skip


def build(cfg: Config, instance: str) -> tuple[Ingress, dict[str, Any]]:
    g = groundwork(cfg, instance)
    ingress = add_ingress(g.template, cfg, instance, g.network, g.groups, add_certificates(g.template, cfg, instance))
    return ingress, g.template.to_dict()["Resources"]


def props(found: dict[str, Any], name: str) -> dict[str, Any]:
    return found[name]["Properties"]


def of_type(found: dict[str, Any], kind: str) -> dict[str, Any]:
    return {name: r["Properties"] for name, r in found.items() if r["Type"] == kind}


def attributes(resource: dict[str, Any], key: str) -> dict[str, str]:
    return {item["Key"]: item["Value"] for item in resource[key]}


def hosts_by_rule(found: dict[str, Any]) -> dict[str, list[str]]:
    return {name: rule["Conditions"][0]["HostHeaderConfig"]["Values"]
            for name, rule in of_type(found, "AWS::ElasticLoadBalancingV2::ListenerRule").items()}  # fmt: skip


def priorities(found: dict[str, Any]) -> dict[str, int]:
    return {name: rule["Priority"]
            for name, rule in of_type(found, "AWS::ElasticLoadBalancingV2::ListenerRule").items()}  # fmt: skip


def test_per_user_mode_routes_each_user_host_to_its_own_target_group(cfg):
    ingress, found = build(cfg, "prod")
    assert sorted(ingress.rstudio_target_groups) == sorted(ingress.rstudio_rules) == sorted(PROD_RSTUDIO)
    assert len(of_type(found, "AWS::ElasticLoadBalancingV2::TargetGroup")) == 4  # three users and Shiny
    assert sorted(hosts_by_rule(found).values()) == sorted(
        [[host] for host in PROD_RSTUDIO.values()] + [["shiny.prod.analytics.example.com"]]
    )
    for user, host in PROD_RSTUDIO.items():
        rule = props(found, ingress.rstudio_rules[user].title)
        assert rule["Conditions"] == [{"Field": "host-header", "HostHeaderConfig": {"Values": [host]}}]
        assert rule["Actions"] == [
            {"Type": "forward", "TargetGroupArn": {"Ref": ingress.rstudio_target_groups[user].title}}
        ]
        assert rule["ListenerArn"] == {"Ref": "HttpsListener"}


def test_shared_mode_has_one_rstudio_host(cfg):
    ingress, found = build(cfg, "dev")
    assert list(ingress.rstudio_rules) == ["shared"]
    assert sorted(hosts_by_rule(found).values()) == [["rstudio.dev.analytics.example.com"],
                                                     ["shiny.dev.analytics.example.com"]]  # fmt: skip
    shiny = props(found, ingress.shiny_rule.title)
    assert shiny["Actions"] == [{"Type": "forward", "TargetGroupArn": {"Ref": "ShinyTargetGroup"}}]


def test_https_only_with_a_modern_tls_policy_and_a_404_for_unknown_hosts(cfg):
    _, found = build(cfg, "prod")
    https = props(found, "HttpsListener")
    assert (https["Port"], https["Protocol"]) == (443, "HTTPS")
    assert https["SslPolicy"].startswith("ELBSecurityPolicy-TLS13-1-2-")  # TLS 1.3 and 1.2, nothing older
    assert https["Certificates"] == [{"CertificateArn": {"Ref": "Certificate"}}]
    assert https["DefaultActions"][0]["FixedResponseConfig"]["StatusCode"] == "404"
    http = props(found, "HttpListener")
    assert (http["Port"], http["Protocol"]) == (80, "HTTP")
    assert http["DefaultActions"] == [{"Type": "redirect", "RedirectConfig": {"Protocol": "HTTPS", "Port": "443",
                                                                              "StatusCode": "HTTP_301"}}]  # fmt: skip
    listeners = of_type(found, "AWS::ElasticLoadBalancingV2::Listener")
    assert sorted(listeners) == ["HttpListener", "HttpsListener"]  # nothing forwards over plain HTTP


def test_load_balancer_is_public_dual_stack_and_hardened(cfg):
    _, found = build(cfg, "prod")
    alb = props(found, "LoadBalancer")
    assert (alb["Scheme"], alb["Type"], alb["IpAddressType"]) == ("internet-facing", "application", "dualstack")
    assert alb["Subnets"] == [{"Ref": f"PublicSubnet{zone}"} for zone in "ABC"]
    assert alb["SecurityGroups"] == [{"Fn::GetAtt": ["AlbSecurityGroup", "GroupId"]}]
    settings = attributes(alb, "LoadBalancerAttributes")
    assert settings["routing.http.drop_invalid_header_fields.enabled"] == "true"
    assert int(settings["idle_timeout.timeout_seconds"]) >= 300  # RStudio long-polls; 60 s gives 504s
    # on by default; destroy switches it off through the parameter before it deletes the instance
    assert settings["deletion_protection.enabled"] == {"Ref": "LoadBalancerDeletionProtection"}
    g = groundwork(cfg, "prod")
    add_ingress(g.template, cfg, "prod", g.network, g.groups, add_certificates(g.template, cfg, "prod"))
    parameter = g.template.to_dict()["Parameters"]["LoadBalancerDeletionProtection"]
    assert (parameter["Default"], parameter["AllowedValues"]) == ("true", ["true", "false"])
    assert settings["waf.fail_open.enabled"] == "false"
    assert settings["access_logs.s3.enabled"] == "true"
    assert settings["access_logs.s3.bucket"] == {"Ref": "AlbLogBucket"}
    # ELB tests its write access at once; an internet-facing ALB needs the internet gateway attached
    assert found["LoadBalancer"]["DependsOn"] == ["AlbLogBucketPolicy", "InternetGatewayAttachment"]


def test_access_log_bucket_is_private_sse_s3_retained_and_writable_only_by_elb_log_delivery(cfg):
    _, found = build(cfg, "prod")
    bucket = found["AlbLogBucket"]
    # Retain, not RetainExceptOnCreate: ELB's test object would make a rolled-back first create fail to delete it.
    assert (bucket["DeletionPolicy"], bucket["UpdateReplacePolicy"]) == ("Retain", "Retain")
    encryption = bucket["Properties"]["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
    assert encryption["ServerSideEncryptionByDefault"] == {"SSEAlgorithm": "AES256"}  # ALB logs cannot use SSE-KMS
    assert bucket["Properties"]["VersioningConfiguration"] == {"Status": "Enabled"}
    assert bucket["Properties"]["PublicAccessBlockConfiguration"]["RestrictPublicBuckets"] is True
    (rule,) = bucket["Properties"]["LifecycleConfiguration"]["Rules"]
    assert rule["ExpirationInDays"] == 365  # prod logs.retention_days
    statements = props(found, "AlbLogBucketPolicy")["PolicyDocument"]["Statement"]
    assert [s["Sid"] for s in statements] == ["DenyInsecureTransport", "AlbAccessLogDelivery"]
    delivery = statements[1]
    assert delivery["Principal"] == {"Service": "logdelivery.elasticloadbalancing.amazonaws.com"}
    assert delivery["Action"] == ["s3:PutObject"]
    assert delivery["Resource"] == [{"Fn::Sub": "${AlbLogBucket.Arn}/AWSLogs/${AWS::AccountId}/*"}]
    # AWS's documented policy has no condition, and ELB is not documented to send aws:SourceAccount
    assert "Condition" not in delivery


def test_rstudio_target_groups_check_the_sign_in_redirect_and_drain_quickly(cfg):
    ingress, found = build(cfg, "prod")
    for group in ingress.rstudio_target_groups.values():
        tg = props(found, group.title)
        assert (tg["TargetType"], tg["Protocol"], tg["Port"]) == ("ip", "HTTP", 8787)
        assert (tg["HealthCheckPath"], tg["Matcher"]) == ("/", {"HttpCode": "200,302"})
        settings = attributes(tg, "TargetGroupAttributes")
        assert int(settings["deregistration_delay.timeout_seconds"]) <= 60
        assert "stickiness.enabled" not in settings  # one task per server


@pytest.mark.parametrize(("instance", "hours"), [("prod", 12), ("dev", 24)])
def test_shiny_target_group_is_sticky_for_the_configured_hours_and_checks_ping(cfg, instance, hours):
    ingress, found = build(cfg, instance)
    tg = props(found, ingress.shiny_target_group.title)
    assert (tg["TargetType"], tg["Protocol"], tg["Port"]) == ("ip", "HTTP", 3838)
    assert (tg["HealthCheckPath"], tg["Matcher"]) == ("/ping", {"HttpCode": "200"})
    settings = attributes(tg, "TargetGroupAttributes")
    assert settings["stickiness.enabled"] == "true"
    assert settings["stickiness.type"] == "lb_cookie"
    assert settings["stickiness.lb_cookie.duration_seconds"] == str(hours * 3600)


def test_target_type_is_ip_on_both_launch_types(cfg, example_data):
    prod = example_data["instances"]["prod"]["rstudio"]
    prod.update(launch_type="fargate", cpu=4096, memory=30720)
    prod.pop("ec2_instance_type")
    for config in (cfg, parse_config(example_data)):  # prod on EC2, then on Fargate
        _, found = build(config, "prod")
        assert {tg["TargetType"] for tg in of_type(found, "AWS::ElasticLoadBalancingV2::TargetGroup").values()} == {
            "ip"}  # fmt: skip


def test_rule_priorities_are_unique_and_stay_put_when_a_user_is_added(cfg, example_data):
    _, before = build(cfg, "prod")
    example_data["instances"]["prod"]["users"]["aaron"] = {"email": "aaron@example.com", "uid": 3010}
    _, after = build(parse_config(example_data), "prod")
    old, new = priorities(before), priorities(after)
    assert {name: new[name] for name in old} == old
    assert new["AaronRStudioListenerRule"] == 3010  # the uid
    assert len(set(new.values())) == len(new) and all(1 <= p <= 50_000 for p in new.values())


def test_shared_and_shiny_priorities_cannot_meet_a_user(cfg):
    assert priorities(build(cfg, "dev")[1]) == {"RStudioListenerRule": 2, "ShinyListenerRule": 1}


def test_a_users_rule_priority_is_their_uid(cfg):
    found = priorities(build(cfg, "prod")[1])
    assert {name: found[name] for name in ("AliceRStudioListenerRule", "ChenRStudioListenerRule")} == {
        "AliceRStudioListenerRule": 3001, "ChenRStudioListenerRule": 3003,
    }  # fmt: skip


@pytest.mark.parametrize("instance", ["dev", "prod"])
def test_ingress_dns_and_waf_pass_cfn_lint(cfg, instance):
    g = groundwork(cfg, instance)
    certificates = add_certificates(g.template, cfg, instance)
    ingress = add_ingress(g.template, cfg, instance, g.network, g.groups, certificates)
    add_alias_records(g.template, cfg, instance, ingress.load_balancer)
    add_waf(g.template, cfg, instance, ingress.load_balancer, g.key)
    assert lint_template(instance, drop_unused_stored_parameters(g.template).to_json(), cfg.regions) == []
