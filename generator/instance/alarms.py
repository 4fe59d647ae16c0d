"""The alarms a platform team acts on, and the instance's encrypted SNS topic they notify.

Every instance template has the topic `rstudio-<instance>-alarms`, encrypted with the instance key (whose policy in
generator/stacks/storage.py lets CloudWatch alarms of this account use it), one e-mail subscription per
`alerts.emails` address, and alarms that notify it and `alerts.topic_arn` when set, on ALARM and on OK:

- a dead-letter queue holds messages (events that started no sync);
- a DataSync task execution ended in ERROR: DataSync publishes no failure metric, only the EventBridge event
  "DataSync Task Execution State Change"; a rule matching it sends the event (with the execution ARN) to the topic,
  and an alarm on the rule's TriggeredRules metric gives the failure an ALARM/OK state that reaches the optional
  topic too (an EventBridge target in another account would need that account's bus, not just a topic policy);
- an RStudio server or Shiny, for SERVICE_MINUTES, runs fewer tasks than desired (Container Insights, which the
  cluster enables in generator/instance/cluster.py: the ECS/ContainerInsights service metrics) or has an unhealthy
  target in its target group;
- the ALB answers 5xx itself, or the targets do, for more than FIVE_XX_PERCENT of the requests;
- a Lambda function raised an error.

Alarm names start with `rstudio-<instance>-` (alarm_name_prefix): the topic policy and the key policy admit
CloudWatch on behalf of those alarms only. Thresholds and durations are fixed here and documented in the README.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import NamedTuple

import awacs.sns
from awacs.aws import ArnEquals, ArnLike, Condition, Principal, StringEquals
from troposphere import AWSHelperFn, GetAtt, Parameter, Ref, Sub, Template
from troposphere.awslambda import Function
from troposphere.cloudwatch import Alarm, Metric, MetricDataQuery, MetricDimension, MetricStat
from troposphere.ecs import Cluster, Service
from troposphere.elasticloadbalancingv2 import LoadBalancer, TargetGroup
from troposphere.events import InputTransformer, Rule, Target
from troposphere.sns import SubscriptionResource, Topic, TopicPolicy
from troposphere.sqs import Queue

from generator.iam import Allow, Statement, document, regional_arn
from stacksets.config import Config
from stacksets.naming import instance_stackset, logical_id

SERVICE_MINUTES = 10
"""Long enough for a deploy (an RStudio server stops its task before starting the next, and its health check grace
runs) and for a Shiny scale-out."""
FIVE_XX_PERCENT = 5
FIVE_XX_MIN_REQUESTS = 20
"""Per 5 minutes: below that, one failed request of a quiet instance would be a high rate of nothing."""
FIVE_MINUTES = 300


class AlertTopic(NamedTuple):
    topic: Topic
    subscriptions: dict[str, SubscriptionResource]
    """By e-mail address."""


class Alarms(NamedTuple):
    topic: AlertTopic
    topic_policy: TopicPolicy
    datasync_rule: Rule
    alarms: dict[str, Alarm]
    """By alarm name (without the instance prefix)."""


class Monitored(NamedTuple):
    """What the alarms watch, as the other builders of the instance made it."""

    cluster: Cluster
    services: dict[str, Service]
    """ECS services by a readable name: rstudio-<server> and shiny."""
    load_balancer: LoadBalancer
    target_groups: dict[str, TargetGroup]
    """By the same names as the services they serve."""
    dead_letter_queues: dict[str, Queue]
    datasync_tasks: list[AWSHelperFn]
    """Ref of each DataSync task: its ARN."""
    functions: list[Function]


def alarm_name_prefix(instance: str) -> str:
    return f"{instance_stackset(instance)}-"


def topic_name(instance: str) -> str:
    return f"{instance_stackset(instance)}-alarms"


def alarm_source_arn(instance: str) -> Sub:
    """The alarms of this instance, as aws:SourceArn names them when CloudWatch publishes or uses the key. An instance
    named `<this>-<more>` in the same account matches too: the pattern keeps out other accounts' and other tools'
    alarms, not a sibling instance's."""
    return regional_arn("cloudwatch", f"alarm:{alarm_name_prefix(instance)}*")


def add_alarms(t: Template, cfg: Config, instance: str, key: Parameter, monitored: Monitored) -> Alarms:
    topic = add_topic(t, cfg, instance, key)
    actions = [Ref(topic.topic), *external_topic(cfg, instance)]
    alarms: dict[str, Alarm] = {}
    alarms |= add_queue_alarms(t, instance, actions, monitored.dead_letter_queues)
    rule, datasync_alarms = add_datasync_alarms(t, instance, actions, topic.topic, monitored.datasync_tasks)
    alarms |= datasync_alarms
    alarms |= add_service_alarms(t, instance, actions, monitored.cluster, monitored.load_balancer, monitored.services,
                                 monitored.target_groups)
    alarms |= add_load_balancer_alarms(t, instance, actions, monitored.load_balancer)
    alarms |= add_function_alarms(t, instance, actions, monitored.functions)
    policy = add_topic_policy(t, instance, topic.topic, rule)
    return Alarms(topic, policy, rule, alarms)


def external_topic(cfg: Config, instance: str) -> list[Sub]:
    """alerts.topic_arn with the template's partition: config validation made sure the instance's is the same."""
    arn = cfg.instances[instance].alerts.topic_arn
    if arn is None:
        return []
    _arn, _partition, rest = arn.split(":", 2)
    return [Sub(f"arn:${{AWS::Partition}}:{rest}")]


def subscription_id(email: str) -> str:
    # From the address, not its position, so removing one address never replaces another's subscription (and asks
    # that person to confirm again); hashed, because logical ids take letters and digits only.
    return logical_id("AlarmEmail", hashlib.sha256(email.lower().encode()).hexdigest()[:12])


def add_topic(t: Template, cfg: Config, instance: str, key: Parameter) -> AlertTopic:
    """The topic is there without any address too: a team can subscribe later, and the alarms exist either way."""
    topic = t.add_resource(Topic("AlarmTopic", TopicName=topic_name(instance), KmsMasterKeyId=Ref(key),
                                 DisplayName=f"RStudio {instance} alarms"))  # fmt: skip
    subscriptions = {
        email: t.add_resource(SubscriptionResource(subscription_id(email), TopicArn=Ref(topic), Protocol="email",
                                                   Endpoint=email))
        for email in cfg.instances[instance].alerts.emails
    }  # fmt: skip
    return AlertTopic(topic, subscriptions)


def add_topic_policy(t: Template, instance: str, topic: Topic, rule: Rule) -> TopicPolicy:
    """Only this instance's alarms and its DataSync rule may publish; the account's own IAM principals need no
    statement here (an identity policy suffices within the account)."""
    alarms = Statement(Sid="InstanceAlarms", Effect=Allow, Principal=Principal("Service", "cloudwatch.amazonaws.com"),
                       Action=[awacs.sns.Publish], Resource=[Ref(topic)],
                       Condition=Condition([StringEquals("aws:SourceAccount", Ref("AWS::AccountId")),
                                            ArnLike("aws:SourceArn", alarm_source_arn(instance))]))  # fmt: skip
    events = Statement(Sid="DataSyncFailureRule", Effect=Allow, Principal=Principal("Service", "events.amazonaws.com"),
                       Action=[awacs.sns.Publish], Resource=[Ref(topic)],
                       Condition=Condition(ArnEquals("aws:SourceArn", GetAtt(rule, "Arn"))))  # fmt: skip
    return t.add_resource(TopicPolicy("AlarmTopicPolicy", Topics=[Ref(topic)], PolicyDocument=document(alarms, events)))


def _alarm(t: Template, instance: str, name: str, description: str, actions: list, treat_missing: str,
           **settings) -> Alarm:  # fmt: skip
    """`treat_missing`, chosen per alarm: notBreaching where a metric that is absent means nothing happened (AWS
    publishes most counts only when they are not zero), missing where a gap says nothing either way."""
    return t.add_resource(Alarm(
        logical_id("Alarm", name), AlarmName=f"{alarm_name_prefix(instance)}{name}", AlarmDescription=description,
        AlarmActions=actions, OKActions=actions, TreatMissingData=treat_missing, **settings,
    ))  # fmt: skip


def _dimensions(**values) -> list[MetricDimension]:
    return [MetricDimension(Name=name, Value=value) for name, value in values.items()]


def _query(query_id: str, namespace: str, metric: str, stat: str, period: int, **dimensions) -> MetricDataQuery:
    return MetricDataQuery(Id=query_id, ReturnData=False, MetricStat=MetricStat(
        Metric=Metric(Namespace=namespace, MetricName=metric, Dimensions=_dimensions(**dimensions)),
        Period=period, Stat=stat))  # fmt: skip


def add_queue_alarms(t: Template, instance: str, actions: list, queues: dict[str, Queue]) -> dict[str, Alarm]:
    """SQS publishes a queue's metrics while it holds messages, so a missing point is an empty queue."""
    return {
        f"{name}-not-empty": _alarm(
            t, instance, f"{name}-not-empty", f"Dead-letter queue {name} holds messages: events that started no "
            "DataSync run. Read one (its body is the EventBridge event), fix the cause, replay them (README, Alarms).",
            actions, "notBreaching", Namespace="AWS/SQS", MetricName="ApproximateNumberOfMessagesVisible",
            Dimensions=_dimensions(QueueName=GetAtt(queue, "QueueName")), Statistic="Maximum", Period=FIVE_MINUTES,
            EvaluationPeriods=1, Threshold=0, ComparisonOperator="GreaterThanThreshold")
        for name, queue in queues.items()
    }  # fmt: skip


def add_datasync_alarms(t: Template, instance: str, actions: list, topic: Topic,
                        tasks: list[AWSHelperFn]) -> tuple[Rule, dict[str, Alarm]]:  # fmt: skip
    """DataSync's events are best effort; the rule matches executions of this instance's tasks only."""
    pattern = {
        "source": ["aws.datasync"],
        "detail-type": ["DataSync Task Execution State Change"],
        "detail": {"State": ["ERROR"]},
        "resources": [{"prefix": Sub("${Task}/execution/", Task=task)} for task in tasks],
    }
    message = InputTransformer(
        InputPathsMap={"execution": "$.resources[0]", "time": "$.time"},
        InputTemplate=f'"RStudio {instance}: DataSync task execution <execution> ended in ERROR at <time>. '
        'Its task log group /rstudio/' + instance + '/datasync says why (README, Alarms)."',
    )
    rule = t.add_resource(Rule(
        "DataSyncFailureRule", Description=f"Failed DataSync executions of RStudio instance {instance}",
        State="ENABLED", EventPattern=pattern,
        Targets=[Target(Id="alarm-topic", Arn=Ref(topic), InputTransformer=message)],
    ))  # fmt: skip
    name = "datasync-failed"
    alarm = _alarm(
        t, instance, name, "A DataSync task execution ended in ERROR in the last 5 minutes (the topic also got the "
        f"event with its ARN). Read /rstudio/{instance}/datasync and the execution in the DataSync console; the next "
        "hourly run or upload retries.", actions,
        # TriggeredRules is published only when the rule matched: a missing point is no failure.
        "notBreaching", Namespace="AWS/Events", MetricName="TriggeredRules",
        Dimensions=_dimensions(RuleName=Ref(rule)), Statistic="Sum", Period=FIVE_MINUTES, EvaluationPeriods=1,
        Threshold=0, ComparisonOperator="GreaterThanThreshold",
    )  # fmt: skip
    return rule, {name: alarm}


def add_service_alarms(t: Template, instance: str, actions: list, cluster: Cluster, load_balancer: LoadBalancer,
                       services: dict[str, Service], target_groups: dict[str, TargetGroup]) -> dict[str, Alarm]:
    """One alarm per service (per-user servers included): for SERVICE_MINUTES minutes in a row it ran fewer tasks
    than desired (tasks that keep failing to start or keep dying) or its target group had an unhealthy target. One
    alarm rather than two keeps a per-user server at eleven resources, so the largest per-user instance still fits
    CloudFormation's 500 (stacksets/config.py MAX_PER_USER_SERVERS). A gap in Container Insights is no evidence
    either way, so it leaves the alarm's state as it is (missing)."""
    lb = GetAtt(load_balancer, "LoadBalancerFullName")
    alarms = {}
    for name, service in services.items():
        dims = {"ClusterName": Ref(cluster), "ServiceName": GetAtt(service, "Name")}
        group = {"TargetGroup": GetAtt(target_groups[name], "TargetGroupFullName"), "LoadBalancer": lb}
        alarm_name = f"{name}-unavailable"
        alarms[alarm_name] = _alarm(
            t, instance, alarm_name, f"For {SERVICE_MINUTES} minutes {name} has run fewer tasks than desired or had a "
            "target failing the ALB health check. Read the service's events and its stopped tasks' reasons (ECS "
            "console), the target's health reason (EC2 console, target groups), then the container log.",
            actions, "missing", EvaluationPeriods=SERVICE_MINUTES, DatapointsToAlarm=SERVICE_MINUTES, Threshold=0,
            ComparisonOperator="GreaterThanThreshold", Metrics=[
                _query("desired", "ECS/ContainerInsights", "DesiredTaskCount", "Average", 60, **dims),
                _query("running", "ECS/ContainerInsights", "RunningTaskCount", "Average", 60, **dims),
                # An empty target group publishes no point: then the task count speaks.
                _query("unhealthy", "AWS/ApplicationELB", "UnHealthyHostCount", "Maximum", 60, **group),
                MetricDataQuery(Id="unavailable", Expression="MAX([desired - running, FILL(unhealthy, 0)])",
                                Label="tasks missing or unhealthy", ReturnData=True),
            ])  # fmt: skip
    return alarms


def add_load_balancer_alarms(t: Template, instance: str, actions: list,
                             load_balancer: LoadBalancer) -> dict[str, Alarm]:  # fmt: skip
    """5xx counts are published only when not zero, and an idle ALB publishes nothing: missing is fine
    (notBreaching). The ALB counts a request it answered itself without choosing a target (503: no healthy target)
    in HTTPCode_ELB_5XX_Count but not in RequestCount, so that rate divides by both."""
    lb = GetAtt(load_balancer, "LoadBalancerFullName")
    alarms = {}
    for source, metric, meaning in (
        ("elb", "HTTPCode_ELB_5XX_Count", "the ALB itself answered 5xx (502/503/504: no healthy target, a target "
                                          "that closed the connection or timed out)"),
        ("target", "HTTPCode_Target_5XX_Count", "RStudio or Shiny answered 5xx"),
    ):  # fmt: skip
        name = f"alb-{source}-5xx"
        total = "FILL(requests, 0) + FILL(errors, 0)" if source == "elb" else "FILL(requests, 0)"
        alarms[name] = _alarm(
            t, instance, name, f"For 10 minutes more than {FIVE_XX_PERCENT}% of the requests failed: {meaning}. "
            "Check the unavailable alarms, then the ALB access logs and the container logs.",
            actions, "notBreaching", EvaluationPeriods=2, DatapointsToAlarm=2, Threshold=FIVE_XX_PERCENT,
            ComparisonOperator="GreaterThanThreshold", Metrics=[
                _query("errors", "AWS/ApplicationELB", metric, "Sum", FIVE_MINUTES, LoadBalancer=lb),
                _query("requests", "AWS/ApplicationELB", "RequestCount", "Sum", FIVE_MINUTES, LoadBalancer=lb),
                MetricDataQuery(Id="rate", Label="5xx % of requests", ReturnData=True,
                                Expression=f"IF(({total}) >= {FIVE_XX_MIN_REQUESTS}, "
                                           f"100 * FILL(errors, 0) / ({total}), 0)"),
            ])  # fmt: skip
    return alarms


def add_function_alarms(t: Template, instance: str, actions: list, functions: Iterable[Function]) -> dict[str, Alarm]:
    """Lambda publishes Errors only for invocations, so a missing point is a function that did not run."""
    alarms = {}
    for function in functions:
        alarm_name = f"lambda-{function.title}-errors"
        alarms[alarm_name] = _alarm(
            t, instance, alarm_name, f"Lambda function {function.title} raised an error in the last 5 minutes. Read "
            "its log group (named in the function's logging configuration).", actions, "notBreaching",
            Namespace="AWS/Lambda", MetricName="Errors", Dimensions=_dimensions(FunctionName=Ref(function)),
            Statistic="Sum", Period=FIVE_MINUTES, EvaluationPeriods=1, Threshold=0,
            ComparisonOperator="GreaterThanThreshold")  # fmt: skip
    return alarms


def template_functions(t: Template) -> list[Function]:
    """Every function the template holds, so one added later gets its alarm without wiring."""
    return [resource for resource in t.resources.values() if isinstance(resource, Function)]
