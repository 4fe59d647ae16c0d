"""Alarms: every instance template has its encrypted topic, a subscription per alerts.emails address, and an alarm per
dead-letter queue, DataSync failure, ECS service, ALB and Lambda function, each on the metric and dimensions of
exactly the resource it watches, notifying the instance's topic and alerts.topic_arn; the topic and key policies
admit exactly these alarms and the DataSync rule."""

from __future__ import annotations

import json
from fnmatch import fnmatchcase
from typing import Any

import pytest
from cfn_flip import load_yaml

from generator.instance.servers import rstudio_servers
from generator.stacks import storage
from generator.stacks.instance import build
from stacksets.config import Config, parse_config
from stacksets.template_checks import lint_template
from tests.conftest import TEMPLATES
from tests.instance_parts import IMAGE_TAGS

PAGER = "arn:aws:sns:eu-west-1:777777777777:platform-pager"


def resources(cfg: Config, instance: str) -> dict[str, Any]:
    return json.loads(build(cfg, instance, IMAGE_TAGS).to_json())["Resources"]


def of_type(found: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in found.items() if r["Type"] == kind}


def alarms(found: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """By AlarmName."""
    return {r["Properties"]["AlarmName"]: r["Properties"] for r in of_type(found, "AWS::CloudWatch::Alarm").values()}


def dimensions(query: dict[str, Any]) -> dict[str, Any]:
    return {d["Name"]: d["Value"] for d in query["MetricStat"]["Metric"]["Dimensions"]}


def queries(alarm: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {query["Id"]: query for query in alarm["Metrics"]}


def sub(text: str) -> dict[str, str]:
    return {"Fn::Sub": text}


@pytest.mark.parametrize("instance", ["dev", "prod"])
def test_every_instance_has_its_encrypted_topic_with_one_subscription_per_address(cfg, instance):
    found = resources(cfg, instance)
    topic = found["AlarmTopic"]
    assert topic["Type"] == "AWS::SNS::Topic"
    assert topic["Properties"]["TopicName"] == f"rstudio-{instance}-alarms"
    assert topic["Properties"]["KmsMasterKeyId"] == {"Ref": "InstanceKeyArn"}
    subscriptions = of_type(found, "AWS::SNS::Subscription").values()
    assert sorted(s["Properties"]["Endpoint"] for s in subscriptions) == sorted(cfg.instances[instance].alerts.emails)
    assert cfg.instances[instance].alerts.emails  # the example subscribes someone on both
    assert all(s["Properties"]["Protocol"] == "email" and s["Properties"]["TopicArn"] == {"Ref": "AlarmTopic"}
               for s in subscriptions)  # fmt: skip


def test_the_committed_templates_have_the_topic_and_the_alarms(cfg):
    for instance in cfg.instances:
        found = load_yaml((TEMPLATES / f"rstudio-{instance}.yaml").read_text(encoding="utf-8"))["Resources"]
        assert found["AlarmTopic"]["Type"] == "AWS::SNS::Topic"
        assert len(of_type(found, "AWS::CloudWatch::Alarm")) == len(alarms(resources(cfg, instance))) > 5


def test_without_addresses_or_topic_the_topic_is_still_there_and_every_alarm_notifies_it(example_data):
    example_data["instances"]["dev"].pop("alerts", None)
    found = resources(parse_config(example_data), "dev")
    assert found["AlarmTopic"]["Type"] == "AWS::SNS::Topic"
    assert of_type(found, "AWS::SNS::Subscription") == {}
    assert all(a["AlarmActions"] == a["OKActions"] == [{"Ref": "AlarmTopic"}] for a in alarms(found).values())


def test_an_existing_topic_is_notified_too_in_the_templates_partition(example_data):
    example_data["instances"]["dev"]["alerts"] = {"emails": [], "topic_arn": PAGER}
    found = resources(parse_config(example_data), "dev")
    pager = sub("arn:${AWS::Partition}:sns:eu-west-1:777777777777:platform-pager")
    assert alarms(found) and all(a["AlarmActions"] == a["OKActions"] == [{"Ref": "AlarmTopic"}, pager]
                                 for a in alarms(found).values())  # fmt: skip


@pytest.mark.parametrize("instance", ["dev", "prod"])
def test_one_alarm_per_service_on_its_task_counts_and_its_target_group(cfg, instance):
    found = resources(cfg, instance)
    services = {r["Properties"]["LoadBalancers"][0]["TargetGroupArn"]["Ref"]: name
                for name, r in of_type(found, "AWS::ECS::Service").items()
                if r["Properties"].get("LoadBalancers")}  # fmt: skip
    expected = {f"rstudio-{instance}-{server.name}-unavailable": server.id("TargetGroup")
                for server in rstudio_servers(cfg, instance)}  # fmt: skip
    expected[f"rstudio-{instance}-shiny-unavailable"] = "ShinyTargetGroup"
    by_name = alarms(found)
    assert {name for name in by_name if name.endswith("-unavailable")} == set(expected)
    for name, target_group in expected.items():
        alarm = by_name[name]
        parts = queries(alarm)
        service = {"Fn::GetAtt": [services[target_group], "Name"]}
        for metric, query in (("DesiredTaskCount", "desired"), ("RunningTaskCount", "running")):
            assert parts[query]["MetricStat"]["Metric"]["Namespace"] == "ECS/ContainerInsights"
            assert parts[query]["MetricStat"]["Metric"]["MetricName"] == metric
            assert dimensions(parts[query]) == {"ClusterName": {"Ref": "Cluster"}, "ServiceName": service}
        assert parts["unhealthy"]["MetricStat"]["Metric"]["MetricName"] == "UnHealthyHostCount"
        assert dimensions(parts["unhealthy"]) == {
            "TargetGroup": {"Fn::GetAtt": [target_group, "TargetGroupFullName"]},
            "LoadBalancer": {"Fn::GetAtt": ["LoadBalancer", "LoadBalancerFullName"]},
        }
        assert parts["unavailable"]["ReturnData"] is True and "desired - running" in parts["unavailable"]["Expression"]
        assert (alarm["EvaluationPeriods"], alarm["DatapointsToAlarm"], alarm["Threshold"]) == (10, 10, 0)
        assert alarm["TreatMissingData"] == "missing"


def test_container_insights_is_on_for_the_service_alarms(cfg):
    settings = resources(cfg, "dev")["Cluster"]["Properties"]["ClusterSettings"]
    assert {"Name": "containerInsights", "Value": "enabled"} in settings


def test_shiny_disabled_means_no_shiny_alarm(example_data):
    example_data["instances"]["dev"]["shiny"] = {"enabled": False}
    found = resources(parse_config(example_data), "dev")
    assert set(alarms(found)) >= {"rstudio-dev-rstudio-unavailable"}
    assert not [name for name in alarms(found) if "shiny" in name]
    assert "ShinyService" not in json.dumps(alarms(found)) and "ShinyTargetGroup" not in json.dumps(alarms(found))


@pytest.mark.parametrize("instance", ["dev", "prod"])
def test_every_queue_and_every_function_has_its_alarm(cfg, instance):
    found = resources(cfg, instance)
    by_name = alarms(found)
    queues = set(of_type(found, "AWS::SQS::Queue"))
    watched = {a["Dimensions"][0]["Value"]["Fn::GetAtt"][0] for a in by_name.values()
               if a.get("MetricName") == "ApproximateNumberOfMessagesVisible"}  # fmt: skip
    assert queues and watched == queues
    functions = set(of_type(found, "AWS::Lambda::Function"))
    errors = [a for a in by_name.values() if a.get("MetricName") == "Errors"]
    assert functions and {a["Dimensions"][0]["Value"]["Ref"] for a in errors} == functions
    assert all(a["Namespace"] == "AWS/Lambda" and a["Statistic"] == "Sum" and a["Threshold"] == 0
               and a["ComparisonOperator"] == "GreaterThanThreshold" for a in errors)  # fmt: skip


def test_prod_watches_its_welcome_and_release_functions_too(cfg):
    names = set(alarms(resources(cfg, "prod")))
    assert {"rstudio-prod-lambda-DataSyncTriggerFunction-errors", "rstudio-prod-lambda-AsgReleaseFunction-errors",
            "rstudio-prod-lambda-WelcomeEmailFunction-errors"} <= names  # fmt: skip


def test_a_failed_datasync_execution_reaches_the_topic_and_raises_an_alarm(cfg):
    found = resources(cfg, "dev")
    rule = found["DataSyncFailureRule"]["Properties"]
    assert rule["EventPattern"]["source"] == ["aws.datasync"]
    assert rule["EventPattern"]["detail-type"] == ["DataSync Task Execution State Change"]
    assert rule["EventPattern"]["detail"] == {"State": ["ERROR"]}
    tasks = set(of_type(found, "AWS::DataSync::Task"))
    assert len(tasks) == 2 and [p["prefix"] for p in rule["EventPattern"]["resources"]] == [
        {"Fn::Sub": ["${Task}/execution/", {"Task": {"Ref": task}}]} for task in sorted(tasks)]  # fmt: skip
    [target] = rule["Targets"]
    assert target["Arn"] == {"Ref": "AlarmTopic"} and "<execution>" in target["InputTransformer"]["InputTemplate"]
    alarm = alarms(found)["rstudio-dev-datasync-failed"]
    assert (alarm["Namespace"], alarm["MetricName"]) == ("AWS/Events", "TriggeredRules")
    assert alarm["Dimensions"] == [{"Name": "RuleName", "Value": {"Ref": "DataSyncFailureRule"}}]
    assert alarm["TreatMissingData"] == "notBreaching"


def test_the_alb_alarms_are_rates_of_the_load_balancers_5xx(cfg):
    by_name = alarms(resources(cfg, "dev"))
    lb = {"LoadBalancer": {"Fn::GetAtt": ["LoadBalancer", "LoadBalancerFullName"]}}
    for source, metric in (("elb", "HTTPCode_ELB_5XX_Count"), ("target", "HTTPCode_Target_5XX_Count")):
        parts = queries(by_name[f"rstudio-dev-alb-{source}-5xx"])
        assert parts["errors"]["MetricStat"]["Metric"]["MetricName"] == metric
        assert parts["requests"]["MetricStat"]["Metric"]["MetricName"] == "RequestCount"
        assert dimensions(parts["errors"]) == dimensions(parts["requests"]) == lb
        assert parts["rate"]["Expression"].startswith("IF(") and "100 * FILL(errors, 0)" in parts["rate"]["Expression"]


@pytest.mark.parametrize("instance", ["dev", "prod"])
def test_every_alarm_is_named_for_the_topic_and_key_policies_and_chooses_its_missing_data(cfg, instance):
    found = resources(cfg, instance)
    [alarm_statement, events_statement] = found["AlarmTopicPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    pattern = alarm_statement["Condition"]["ArnLike"]["aws:SourceArn"]["Fn::Sub"]
    arn = "arn:${AWS::Partition}:cloudwatch:${AWS::Region}:${AWS::AccountId}:alarm:"
    assert pattern == f"{arn}rstudio-{instance}-*"
    assert alarm_statement["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    assert alarm_statement["Condition"]["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
    assert events_statement["Principal"] == {"Service": "events.amazonaws.com"}
    assert events_statement["Condition"] == {"ArnEquals": {"aws:SourceArn": {"Fn::GetAtt": ["DataSyncFailureRule",
                                                                                          "Arn"]}}}  # fmt: skip
    assert all(s["Action"] == ["sns:Publish"] and s["Resource"] == [{"Ref": "AlarmTopic"}]
               for s in (alarm_statement, events_statement))  # fmt: skip
    key = json.loads(storage.build(cfg, instance).to_json())["Resources"]["InstanceKey"]["Properties"]["KeyPolicy"]
    [cloudwatch] = [s for s in key["Statement"] if s["Principal"] == {"Service": "cloudwatch.amazonaws.com"}]
    assert cloudwatch["Condition"]["ArnLike"]["aws:SourceArn"]["Fn::Sub"] == pattern
    for name, alarm in alarms(found).items():
        assert fnmatchcase(arn + name, pattern), name
        assert alarm["TreatMissingData"] in ("missing", "notBreaching")
        assert alarm["AlarmActions"] == alarm["OKActions"] and alarm["AlarmDescription"]


@pytest.mark.slow
def test_a_template_with_an_existing_topic_and_no_shiny_passes_cfn_lint(example_data):
    example_data["instances"]["dev"]["alerts"] = {"emails": ["a@example.com", "b@example.com"], "topic_arn": PAGER}
    example_data["instances"]["dev"]["shiny"] = {"enabled": False}
    cfg = parse_config(example_data)
    assert lint_template("dev", build(cfg, "dev", IMAGE_TAGS).to_json(), cfg.regions) == []
