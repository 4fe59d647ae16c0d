"""The web ACL: allowlists flip the default action, managed rules that break RStudio count, limits from config."""

from __future__ import annotations

from typing import Any

import pytest

from generator.instance.dns import add_certificates
from generator.instance.ingress import add_ingress
from generator.instance.waf import add_waf
from stacksets.config import Config, parse_config
from tests.instance_parts import groundwork, stack_log_group_name

BODY_RULES = {"SizeRestrictions_BODY", "CrossSiteScripting_BODY", "GenericLFI_BODY", "GenericRFI_BODY",
              "EC2MetaDataSSRF_BODY"}  # fmt: skip


def resources(cfg: Config, instance: str) -> dict[str, Any]:
    g = groundwork(cfg, instance)
    ingress = add_ingress(g.template, cfg, instance, g.network, g.groups, add_certificates(g.template, cfg, instance))
    add_waf(g.template, cfg, instance, ingress.load_balancer, g.key)
    return g.template.to_dict()["Resources"]


def acl(found: dict[str, Any]) -> dict[str, Any]:
    return found["WebAcl"]["Properties"]


def rules(found: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {rule["Name"]: rule for rule in acl(found)["Rules"]}


def without_allowlists(example_data: dict[str, Any], instance: str) -> Config:
    example_data["instances"][instance]["waf"].update(allow_ipv4=[], allow_ipv6=[])
    return parse_config(example_data)


def test_allowlists_block_everyone_else_and_allow_both_address_families(cfg):
    found = resources(cfg, "prod")
    assert acl(found)["DefaultAction"] == {"Block": {}}
    assert acl(found)["Scope"] == "REGIONAL"
    ipv4, ipv6 = found["AllowListIpv4"]["Properties"], found["AllowListIpv6"]["Properties"]
    assert (ipv4["IPAddressVersion"], ipv4["Addresses"]) == ("IPV4", ["198.51.100.0/24", "203.0.113.16/28"])
    assert (ipv6["IPAddressVersion"], ipv6["Addresses"]) == ("IPV6", ["2001:db8:100::/48"])
    allow = rules(found)["AllowList"]
    assert allow["Action"] == {"Allow": {}}
    assert allow["Statement"] == {"OrStatement": {"Statements": [
        {"IPSetReferenceStatement": {"Arn": {"Fn::GetAtt": [name, "Arn"]}}}
        for name in ("AllowListIpv4", "AllowListIpv6")]}}  # fmt: skip


def test_one_allowlist_alone_still_blocks_by_default(example_data):
    example_data["instances"]["dev"]["waf"]["allow_ipv6"] = []
    found = resources(parse_config(example_data), "dev")
    assert acl(found)["DefaultAction"] == {"Block": {}}
    assert "AllowListIpv6" not in found
    assert rules(found)["AllowList"]["Statement"] == {
        "IPSetReferenceStatement": {"Arn": {"Fn::GetAtt": ["AllowListIpv4", "Arn"]}}}  # fmt: skip


def test_without_allowlists_the_default_is_allow_and_no_ip_sets_exist(example_data):
    found = resources(without_allowlists(example_data, "dev"), "dev")
    assert acl(found)["DefaultAction"] == {"Allow": {}}
    assert not [r for r in found.values() if r["Type"] == "AWS::WAFv2::IPSet"]
    assert "AllowList" not in rules(found)
    assert {"RateLimit", "AWSManagedRulesCommonRuleSet"} <= set(rules(found))  # protection stays on


def test_managed_and_rate_rules_run_before_the_allowlist(cfg):
    ordered = sorted(acl(resources(cfg, "prod"))["Rules"], key=lambda rule: rule["Priority"])
    assert [rule["Name"] for rule in ordered] == [
        "AWSManagedRulesAmazonIpReputationList", "AWSManagedRulesKnownBadInputsRuleSet", "AWSManagedRulesCommonRuleSet",
        "RateLimit", "SignInRateLimit", "AllowList"]  # fmt: skip
    priorities = [rule["Priority"] for rule in ordered]
    assert len(set(priorities)) == len(priorities)


def test_common_rule_set_counts_the_body_rules_that_break_rstudio(cfg):
    common = rules(resources(cfg, "prod"))["AWSManagedRulesCommonRuleSet"]
    statement = common["Statement"]["ManagedRuleGroupStatement"]
    counted = {o["Name"] for o in statement["RuleActionOverrides"] if o["ActionToUse"] == {"Count": {}}}
    assert BODY_RULES <= counted
    assert all(name.endswith("_BODY") or name.startswith("SizeRestrictions_") for name in counted)
    assert common["OverrideAction"] == {"None": {}}  # every other rule of the group still blocks


@pytest.mark.parametrize(("instance", "limit"), [("prod", 3000), ("dev", 2000)])
def test_rate_limit_per_ip_comes_from_config(cfg, instance, limit):
    rule = rules(resources(cfg, instance))["RateLimit"]
    assert rule["Action"] == {"Block": {}}
    assert rule["Statement"]["RateBasedStatement"] == {"Limit": limit, "EvaluationWindowSec": 300,
                                                       "AggregateKeyType": "IP"}  # fmt: skip


def test_sign_in_form_has_its_own_tight_limit(cfg):
    statement = rules(resources(cfg, "prod"))["SignInRateLimit"]["Statement"]["RateBasedStatement"]
    assert statement["Limit"] < 3000
    assert statement["ScopeDownStatement"]["ByteMatchStatement"]["SearchString"] == "/auth-do-sign-in"


def test_metrics_and_sampled_requests_are_on_everywhere(cfg):
    found = resources(cfg, "prod")
    for visibility in [acl(found)["VisibilityConfig"]] + [rule["VisibilityConfig"] for rule in acl(found)["Rules"]]:
        assert visibility["CloudWatchMetricsEnabled"] is True and visibility["SampledRequestsEnabled"] is True
    metric_names = [rule["VisibilityConfig"]["MetricName"] for rule in acl(found)["Rules"]]
    assert len(set(metric_names)) == len(metric_names)


def test_web_acl_is_associated_with_the_load_balancer(cfg):
    association = resources(cfg, "dev")["WebAclAssociation"]["Properties"]
    assert association == {"ResourceArn": {"Ref": "LoadBalancer"}, "WebACLArn": {"Fn::GetAtt": ["WebAcl", "Arn"]}}


def test_blocked_and_counted_requests_are_logged_encrypted_without_credentials(cfg):
    found = resources(cfg, "prod")
    group = found["WafLogGroup"]
    # WAF requires the prefix; the stack id follows, as in every compute log group.
    assert group["Properties"]["LogGroupName"] == stack_log_group_name("aws-waf-logs-rstudio-prod")
    assert group["Properties"]["KmsKeyId"] == {"Ref": "InstanceKeyArn"}
    assert group["Properties"]["RetentionInDays"] == 365
    assert group["DeletionPolicy"] == "RetainExceptOnCreate"
    assert group["UpdateReplacePolicy"] == "Retain"
    logging = found["WafLogging"]
    assert logging["Properties"]["ResourceArn"] == {"Fn::GetAtt": ["WebAcl", "Arn"]}
    assert "DependsOn" not in logging  # the destination refers to the group, which orders it
    redacted = {field["SingleHeader"]["Name"] for field in logging["Properties"]["RedactedFields"]}
    assert redacted == {"authorization", "cookie"}
    kept = logging["Properties"]["LoggingFilter"]
    assert kept["DefaultBehavior"] == "DROP"
    assert {c["ActionCondition"]["Action"] for c in kept["Filters"][0]["Conditions"]} == {"BLOCK", "COUNT"}


def test_waf_logs_into_the_log_group_it_creates(cfg):
    found = resources(cfg, "prod")
    name = found["WafLogGroup"]["Properties"]["LogGroupName"]
    [destination] = found["WafLogging"]["Properties"]["LogDestinationConfigs"]
    groups = "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:"
    if isinstance(name, str):
        assert destination == {"Fn::Sub": groups + name}
    else:  # a name made at deploy time: the plain ARN must take it from the group (its Arn attribute ends in ":*")
        assert destination == {"Fn::Sub": [groups + "${Group}", {"Group": {"Ref": "WafLogGroup"}}]}
