"""The instance's one internet-facing ALB: host-based routing to each RStudio server and to Shiny, TLS only.

What RStudio and Shiny need from it (rstudio_ops.md §2-§3):
- idle timeout well above 60 s: RStudio long-polls, and slow synchronous calls (zipping a folder for download) keep a
  request open without traffic; 600 s covers them and still frees connections of vanished browsers soon;
- one host name per RStudio server (its cookies are per host), RStudio health check on `/` expecting 200 or 302 (an
  unauthenticated request is redirected to the sign-in page); open-source RStudio has no health endpoint;
- Shiny health check on `/ping`, and ALB cookie stickiness, because a Shiny session lives in one R process;
- target type `ip`: every task runs in awsvpc network mode, on Fargate and on EC2 alike.

Unknown host names get a plain 404 from the listener; plain HTTP only redirects to HTTPS. The ECS services attach
their tasks to the target groups here and must DependsOn the matching listener rule (ECS refuses a target group that
no listener uses yet).

Listener rule priorities must be unique and must not move when users come and go (CloudFormation updates rules one by
one, so swapping two priorities fails with PriorityInUse). Shiny is 1, the shared RStudio 2, and a per-user server's
priority is its user's uid: unique, never changed once files exist, and within the ALB's 1-50000 range by config
validation.
"""

from __future__ import annotations

from typing import NamedTuple

import awacs.s3
from awacs.aws import Principal
from troposphere import GetAtt, Parameter, Ref, Tags, Template
from troposphere.elasticloadbalancingv2 import (
    Action,
    Certificate,
    FixedResponseConfig,
    HostHeaderConfig,
    Listener,
    ListenerCertificate,
    ListenerRule,
    ListenerRuleAction,
    LoadBalancer,
    LoadBalancerAttributes,
    Matcher,
    RedirectConfig,
    TargetGroup,
    TargetGroupAttribute,
)
from troposphere.elasticloadbalancingv2 import Condition as RuleCondition
from troposphere.s3 import Bucket, BucketPolicy, LifecycleRule, NoncurrentVersionExpiration

from generator.buckets import abort_multipart, add_bucket_policy, hardened_bucket, object_arn
from generator.common import skip_checkov
from generator.iam import Allow, Statement
from generator.instance.dns import Certificates
from generator.instance.network import Network
from generator.instance.security_groups import HTTP_PORT, HTTPS_PORT, RSTUDIO_PORT, SHINY_PORT, SecurityGroups
from generator.instance.servers import RStudioServer, rstudio_servers, shiny_host
from stacksets.config import Config, Instance
from stacksets.naming import DELETION_PROTECTION_PARAMETER, instance_stackset

IDLE_TIMEOUT_SECONDS = 600
# TLS 1.3 and 1.2 with forward-secret AEAD ciphers only, plus hybrid post-quantum key exchange; AWS's recommendation.
TLS_POLICY = "ELBSecurityPolicy-TLS13-1-2-Res-PQ-2025-09"
# One RStudio task per server, and ECS stops the old one before starting the next, so the delay is downtime on
# every deploy: long enough for requests in flight, no longer.
RSTUDIO_DEREGISTRATION_SECONDS = 30
# Shiny scales in under load; give running requests and socket reconnects time to finish on the leaving task.
SHINY_DEREGISTRATION_SECONDS = 120
SHINY_PRIORITY = 1
SHARED_RSTUDIO_PRIORITY = 2


class Ingress(NamedTuple):
    load_balancer: LoadBalancer
    https_listener: Listener
    rstudio_target_groups: dict[str, TargetGroup]
    """Keyed by RStudioServer.key."""
    rstudio_rules: dict[str, ListenerRule]
    shiny_target_group: TargetGroup | None
    shiny_rule: ListenerRule | None
    """Both None when shiny.enabled is false."""
    access_log_bucket: Bucket


def add_ingress(t: Template, cfg: Config, instance: str, network: Network, groups: SecurityGroups,
                certificates: Certificates) -> Ingress:  # fmt: skip
    bucket, policy = add_access_log_bucket(t, cfg.instances[instance])
    load_balancer = add_load_balancer(t, instance, network, groups, bucket, policy)
    https = add_listeners(t, load_balancer, certificates)
    routes = {server.key: add_rstudio_route(t, cfg, instance, network, https, server)
              for server in rstudio_servers(cfg, instance)}  # fmt: skip
    shiny_group, shiny_rule = (add_shiny_route(t, cfg, instance, network, https)
                               if cfg.instances[instance].shiny.enabled else (None, None))  # fmt: skip
    return Ingress(load_balancer, https, {key: group for key, (group, _) in routes.items()},
                   {key: rule for key, (_, rule) in routes.items()}, shiny_group, shiny_rule, bucket)  # fmt: skip


def add_access_log_bucket(t: Template, settings: Instance) -> tuple[Bucket, BucketPolicy]:
    """ALB access logs, kept as long as the instance's other logs. SSE-S3: ALB log delivery cannot use SSE-KMS."""
    rule = LifecycleRule(Id="expire-access-logs", Status="Enabled", ExpirationInDays=settings.logs.retention_days,
                         NoncurrentVersionExpiration=NoncurrentVersionExpiration(NoncurrentDays=1),
                         AbortIncompleteMultipartUpload=abort_multipart())  # fmt: skip
    bucket = hardened_bucket("AlbLogBucket", "unnamed", None, [rule])
    # Nothing else needs the name, and a generated one lets the stack be created again next to the retained bucket.
    del bucket.properties["BucketName"]
    # Retain even when a first create rolls back: enabling access logs makes ELB write a test object at once, and a
    # bucket that is not empty cannot be deleted, so the rollback would fail (ROLLBACK_FAILED) instead of finishing.
    # Unnamed, the kept bucket never blocks the retry.
    bucket.DeletionPolicy = "Retain"
    skip_checkov(bucket, CKV_AWS_18="this is the ALB's log bucket; logging it into another bucket only adds noise")
    t.add_resource(bucket)
    # The ELB log-delivery service principal (all current regions); the AWSLogs/<account>/ prefix is where ELB
    # writes for load balancers of this account, and SourceAccount keeps other accounts' ALBs out.
    delivery = Statement(Sid="AlbAccessLogDelivery", Effect=Allow,
                         Principal=Principal("Service", "logdelivery.elasticloadbalancing.amazonaws.com"),
                         # No condition: AWS's documented policy has none, and ELB's test write would be refused if
                         # it sent no aws:SourceAccount; the object ARN's AWSLogs/<account>/ prefix is the safeguard
                         # ("Enable access logs for your Application Load Balancer", step 2)
                         Action=[awacs.s3.PutObject],
                         Resource=[object_arn(bucket, "AWSLogs/${AWS::AccountId}/*")])  # fmt: skip
    return bucket, add_bucket_policy(t, bucket, delivery)


def add_deletion_protection_parameter(t: Template) -> Parameter:
    return t.add_parameter(Parameter(
        DELETION_PROTECTION_PARAMETER, Type="String", Default="true", AllowedValues=["true", "false"],
        Description="Deletion protection of the load balancer; deploy.py destroy sets it to false before it deletes "
                    "the instance",
    ))  # fmt: skip


def add_load_balancer(t: Template, instance: str, network: Network, groups: SecurityGroups, bucket: Bucket,
                      bucket_policy: BucketPolicy) -> LoadBalancer:  # fmt: skip
    attributes = {
        "idle_timeout.timeout_seconds": str(IDLE_TIMEOUT_SECONDS),
        "routing.http.drop_invalid_header_fields.enabled": "true",
        # The WAF allowlist is the instance's access control: if WAF cannot answer, refuse rather than admit.
        "waf.fail_open.enabled": "false",
        # Deleting the ALB takes every user offline and changes the target of every alias record: a stack deletion
        # or an update that would replace it fails instead. `deploy.py destroy` switches it off first.
        "deletion_protection.enabled": Ref(add_deletion_protection_parameter(t)),
        "access_logs.s3.enabled": "true",
        "access_logs.s3.bucket": Ref(bucket),
    }
    return t.add_resource(LoadBalancer(
        "LoadBalancer",
        Type="application",
        Scheme="internet-facing",
        IpAddressType="dualstack",
        Subnets=[Ref(subnet) for subnet in network.public_subnets],
        SecurityGroups=[GetAtt(groups.alb, "GroupId")],
        LoadBalancerAttributes=[LoadBalancerAttributes(Key=key, Value=value) for key, value in attributes.items()],
        Tags=Tags(Name=instance_stackset(instance)),
        # ELB writes a test object when logging is switched on, so the bucket policy must exist first; an
        # internet-facing load balancer needs the internet gateway attached.
        DependsOn=[bucket_policy.title, network.attachment.title],
    ))  # fmt: skip


def add_listeners(t: Template, load_balancer: LoadBalancer, certificates: Certificates) -> Listener:
    """HTTPS with a 404 for unknown hosts (the rules add the known ones); HTTP only redirects to HTTPS."""
    https = t.add_resource(Listener(
        "HttpsListener", LoadBalancerArn=Ref(load_balancer), Port=HTTPS_PORT, Protocol="HTTPS", SslPolicy=TLS_POLICY,
        Certificates=[Certificate(CertificateArn=Ref(certificates.default))],
        DefaultActions=[Action(Type="fixed-response", FixedResponseConfig=FixedResponseConfig(
            StatusCode="404", ContentType="text/plain", MessageBody="Unknown host name"))],
    ))  # fmt: skip
    for extra in certificates.extra:
        t.add_resource(ListenerCertificate(f"{extra.title}OnListener", ListenerArn=Ref(https),
                                           Certificates=[Certificate(CertificateArn=Ref(extra))]))  # fmt: skip
    t.add_resource(Listener(
        "HttpListener", LoadBalancerArn=Ref(load_balancer), Port=HTTP_PORT, Protocol="HTTP",
        DefaultActions=[Action(Type="redirect", RedirectConfig=RedirectConfig(
            Protocol="HTTPS", Port=str(HTTPS_PORT), StatusCode="HTTP_301"))],
    ))  # fmt: skip
    return https


def rstudio_priority(cfg: Config, instance: str, server: RStudioServer) -> int:
    users = cfg.instances[instance].users
    return users[server.key].uid if server.key in users else SHARED_RSTUDIO_PRIORITY


def _target_group(t: Template, title: str, network: Network, port: int, health_path: str, codes: str,
                  attributes: dict[str, str], name: str) -> TargetGroup:  # fmt: skip
    return t.add_resource(TargetGroup(
        title, TargetType="ip", Protocol="HTTP", Port=port, VpcId=Ref(network.vpc),
        HealthCheckProtocol="HTTP", HealthCheckPath=health_path, Matcher=Matcher(HttpCode=codes),
        HealthCheckIntervalSeconds=30, HealthCheckTimeoutSeconds=10, HealthyThresholdCount=2,
        # A busy R session can make a single slow answer; replacing the task would end every session on it.
        UnhealthyThresholdCount=5,
        TargetGroupAttributes=[TargetGroupAttribute(Key=key, Value=value) for key, value in attributes.items()],
        Tags=Tags(Name=name),
    ))  # fmt: skip


def _host_rule(t: Template, title: str, listener: Listener, host: str, group: TargetGroup,
               priority: int) -> ListenerRule:  # fmt: skip
    return t.add_resource(ListenerRule(
        title, ListenerArn=Ref(listener), Priority=priority,
        Conditions=[RuleCondition(Field="host-header", HostHeaderConfig=HostHeaderConfig(Values=[host]))],
        Actions=[ListenerRuleAction(Type="forward", TargetGroupArn=Ref(group))],
    ))  # fmt: skip


def add_rstudio_route(t: Template, cfg: Config, instance: str, network: Network, listener: Listener,
                      server: RStudioServer) -> tuple[TargetGroup, ListenerRule]:  # fmt: skip
    """One target group and host rule per server; no stickiness, a server is one task."""
    attributes = {"deregistration_delay.timeout_seconds": str(RSTUDIO_DEREGISTRATION_SECONDS)}
    group = _target_group(t, server.id("TargetGroup"), network, RSTUDIO_PORT, "/", "200,302", attributes,
                          f"{instance_stackset(instance)}-{server.name}")  # fmt: skip
    priority = rstudio_priority(cfg, instance, server)
    return group, _host_rule(t, server.id("ListenerRule"), listener, server.host, group, priority)


def add_shiny_route(t: Template, cfg: Config, instance: str, network: Network,
                    listener: Listener) -> tuple[TargetGroup, ListenerRule]:  # fmt: skip
    """Sticky for the configured hours; new browsers go to the task with the fewest requests in flight."""
    attributes = {
        "deregistration_delay.timeout_seconds": str(SHINY_DEREGISTRATION_SECONDS),
        "stickiness.enabled": "true",
        "stickiness.type": "lb_cookie",
        "stickiness.lb_cookie.duration_seconds": str(cfg.instances[instance].shiny.stickiness_hours * 3600),
        "load_balancing.algorithm.type": "least_outstanding_requests",
    }
    group = _target_group(t, "ShinyTargetGroup", network, SHINY_PORT, "/ping", "200", attributes,
                          f"{instance_stackset(instance)}-shiny")  # fmt: skip
    return group, _host_rule(t, "ShinyListenerRule", listener, shiny_host(cfg, instance), group, SHINY_PRIORITY)
