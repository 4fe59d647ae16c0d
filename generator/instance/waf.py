"""The regional web ACL on the instance's ALB: who may connect, how fast, and which requests look like attacks.

Rules run in priority order and the first terminating action wins, so the managed groups and the rate limits come
before the allowlist: an allow-listed office still cannot send known-bad input or flood the ALB. With an allowlist the
default action blocks everyone else; without one the instance is open to the internet behind RStudio's own sign-in.

The common rule set's body rules are counted, not enforced: RStudio sends editor contents, console input and uploads
in request bodies, and R code, HTML, Rmd and paths like "../" trip them (rstudio_ops.md §6). The query-string size
rule is counted too, because Shiny's URL bookmarks encode every input in the query string. Counted rules still label
and log their matches.

Logs go to a KMS-encrypted log group, and only for requests a rule blocked or counted, with the authorization and
cookie headers redacted: enough to explain a blocked user without storing every session cookie.
"""

from __future__ import annotations

from typing import NamedTuple

from troposphere import GetAtt, Parameter, Ref, Sub, Template
from troposphere.elasticloadbalancingv2 import LoadBalancer
from troposphere.logs import LogGroup
from troposphere.wafv2 import (
    ActionCondition,
    AllowAction,
    BlockAction,
    ByteMatchStatement,
    CountAction,
    DefaultAction,
    FieldToMatch,
    Filter,
    IPSet,
    IPSetReferenceStatement,
    LoggingConfiguration,
    LoggingConfigurationFieldToMatch,
    LoggingFilter,
    ManagedRuleGroupStatement,
    OrStatement,
    OverrideAction,
    RateBasedStatement,
    RuleAction,
    RuleActionOverride,
    SingleHeader,
    Statement,
    TextTransformation,
    VisibilityConfig,
    WebACL,
    WebACLAssociation,
    WebACLRule,
)
from troposphere.wafv2 import Condition as LogCondition

from generator.instance.tasks import add_log_group
from stacksets.config import Config
from stacksets.naming import instance_stackset

COUNTED_COMMON_RULES = ("SizeRestrictions_BODY", "CrossSiteScripting_BODY", "GenericLFI_BODY", "GenericRFI_BODY",
                        "EC2MetaDataSSRF_BODY", "SizeRestrictions_QUERYSTRING")  # fmt: skip
MANAGED_GROUPS = ("AWSManagedRulesAmazonIpReputationList", "AWSManagedRulesKnownBadInputsRuleSet",
                  "AWSManagedRulesCommonRuleSet")  # fmt: skip
RATE_WINDOW_SECONDS = 300
# Password guessing against RStudio's sign-in form: far above what people behind one office address ever need.
SIGN_IN_LIMIT_PER_5_MINUTES = 100
SIGN_IN_PATH = "/auth-do-sign-in"
REDACTED_HEADERS = ("authorization", "cookie")


class Waf(NamedTuple):
    web_acl: WebACL
    ip_sets: list[IPSet]
    log_group: LogGroup


def add_waf(t: Template, cfg: Config, instance: str, load_balancer: LoadBalancer, key: Parameter) -> Waf:
    ip_sets = add_ip_sets(t, cfg, instance)
    rules = managed_rules() + rate_rules(cfg, instance) + allowlist_rules(ip_sets)
    acl = t.add_resource(WebACL(
        "WebAcl",
        Scope="REGIONAL",
        Description=f"RStudio instance {instance}",
        DefaultAction=DefaultAction(Block=BlockAction()) if ip_sets else DefaultAction(Allow=AllowAction()),
        Rules=rules,
        VisibilityConfig=_visibility(f"{instance_stackset(instance)}-web-acl"),
    ))  # fmt: skip
    t.add_resource(WebACLAssociation("WebAclAssociation", ResourceArn=Ref(load_balancer),
                                     WebACLArn=GetAtt(acl, "Arn")))  # fmt: skip
    log_group = add_waf_logging(t, cfg, instance, acl, key)
    return Waf(acl, ip_sets, log_group)


def _visibility(metric: str) -> VisibilityConfig:
    return VisibilityConfig(CloudWatchMetricsEnabled=True, SampledRequestsEnabled=True, MetricName=metric)


def add_ip_sets(t: Template, cfg: Config, instance: str) -> list[IPSet]:
    """One set per address family (a WAF IP set holds one), only for non-empty lists."""
    waf = cfg.instances[instance].waf
    families = {"IPV4": waf.allow_ipv4, "IPV6": waf.allow_ipv6}
    return [
        t.add_resource(IPSet(f"AllowList{version.title()}", Scope="REGIONAL", IPAddressVersion=version,
                             Addresses=sorted(addresses), Description=f"RStudio instance {instance}: allowed clients"))
        for version, addresses in families.items()
        if addresses
    ]  # fmt: skip


def managed_rules() -> list[WebACLRule]:
    rules = []
    for priority, name in enumerate(MANAGED_GROUPS):
        statement = ManagedRuleGroupStatement(VendorName="AWS", Name=name)
        if name == "AWSManagedRulesCommonRuleSet":
            statement.RuleActionOverrides = [RuleActionOverride(Name=rule, ActionToUse=RuleAction(Count=CountAction()))
                                             for rule in COUNTED_COMMON_RULES]  # fmt: skip
        rules.append(WebACLRule(Name=name, Priority=10 * priority, OverrideAction=OverrideAction(**{"None": {}}),
                                Statement=Statement(ManagedRuleGroupStatement=statement),
                                VisibilityConfig=_visibility(name)))  # fmt: skip
    return rules


def rate_rules(cfg: Config, instance: str) -> list[WebACLRule]:
    """A generous limit for everything (RStudio is chatty) and a tight one for the sign-in form."""
    overall = RateBasedStatement(
        Limit=cfg.instances[instance].waf.rate_limit_per_5_minutes,
        EvaluationWindowSec=RATE_WINDOW_SECONDS,
        AggregateKeyType="IP",
    )
    sign_in = RateBasedStatement(
        Limit=SIGN_IN_LIMIT_PER_5_MINUTES, EvaluationWindowSec=RATE_WINDOW_SECONDS, AggregateKeyType="IP",
        ScopeDownStatement=Statement(ByteMatchStatement=ByteMatchStatement(
            FieldToMatch=FieldToMatch(UriPath={}), PositionalConstraint="STARTS_WITH", SearchString=SIGN_IN_PATH,
            TextTransformations=[TextTransformation(Priority=0, Type="NONE")])),
    )  # fmt: skip
    return [
        WebACLRule(Name=name, Priority=priority, Action=RuleAction(Block=BlockAction()),
                   Statement=Statement(RateBasedStatement=statement), VisibilityConfig=_visibility(name))
        for name, priority, statement in (("RateLimit", 100, overall), ("SignInRateLimit", 110, sign_in))
    ]  # fmt: skip


def allowlist_rules(ip_sets: list[IPSet]) -> list[WebACLRule]:
    """Last: an Allow ends evaluation, so everything above must already have had its say."""
    if not ip_sets:
        return []
    references = [Statement(IPSetReferenceStatement=IPSetReferenceStatement(Arn=GetAtt(s, "Arn"))) for s in ip_sets]
    statement = references[0] if len(references) == 1 else Statement(OrStatement=OrStatement(Statements=references))
    return [WebACLRule(Name="AllowList", Priority=1000, Action=RuleAction(Allow=AllowAction()), Statement=statement,
                       VisibilityConfig=_visibility("AllowList"))]  # fmt: skip


def add_waf_logging(t: Template, cfg: Config, instance: str, acl: WebACL, key: Parameter) -> LogGroup:
    settings = cfg.instances[instance]
    # WAF only logs to log groups whose name starts with aws-waf-logs-.
    name = f"aws-waf-logs-{instance_stackset(instance)}"
    log_group = add_log_group(t, "WafLogGroup", name, key, settings.logs.retention_days)
    keep = Filter(Behavior="KEEP", Requirement="MEETS_ANY",
                  Conditions=[LogCondition(ActionCondition=ActionCondition(Action=action))
                              for action in ("BLOCK", "COUNT")])  # fmt: skip
    t.add_resource(LoggingConfiguration(
        "WafLogging",
        ResourceArn=GetAtt(acl, "Arn"),
        # The log group's Arn attribute ends in ":*", which WAF rejects; the plain ARN, from its generated name (the
        # Ref is also the dependency).
        LogDestinationConfigs=[Sub("arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:${Group}",
                                   Group=Ref(log_group))],
        LoggingFilter=LoggingFilter(DefaultBehavior="DROP", Filters=[keep]),
        RedactedFields=[LoggingConfigurationFieldToMatch(SingleHeader=SingleHeader(Name=header))
                        for header in REDACTED_HEADERS],
    ))  # fmt: skip
    return log_group
