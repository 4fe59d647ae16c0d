"""The model's per-account and per-Region limits on what a stack may create: VPCs, Elastic IPs, CloudWatch Logs
resource policies (the log-delivery one WAF logging adds included), and WAF's log destination."""

from __future__ import annotations

from stacksets.awsmodel.engine import DefaultEnvironment, StackEngine

ACCOUNT, REGION = "555555555555", "eu-west-1"
POLICY = ("  Policy:\n    Type: AWS::Logs::ResourcePolicy\n    Properties:\n      PolicyName: p{}\n"
          "      PolicyDocument: '{{}}'\n")


def waf_logging(group: str, destination: str | None = None) -> str:
    destination = destination or group
    return (f"  Group:\n    Type: AWS::Logs::LogGroup\n    Properties:\n      LogGroupName: {group}\n"
            f"  Logging:\n    Type: AWS::WAFv2::LoggingConfiguration\n    DependsOn: Group\n    Properties:\n"
            f"      ResourceArn: arn:aws:wafv2:{REGION}:{ACCOUNT}:regional/webacl/a/1\n"
            f"      LogDestinationConfigs: [arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{destination}]\n")  # fmt: skip


def reasons(stack) -> list[str]:
    return [event.reason for event in stack.events if event.reason]


def test_waf_logs_only_into_a_log_group_that_exists():
    engine = StackEngine(DefaultEnvironment())
    wrong = engine.create("wrong", ACCOUNT, REGION, "Resources:\n" + waf_logging("aws-waf-logs-a/1", "aws-waf-logs-a"),
                          {})  # fmt: skip
    assert wrong.status == "ROLLBACK_COMPLETE"
    assert any("WAFNonexistentItemException" in reason for reason in reasons(wrong))
    assert engine.create("right", ACCOUNT, REGION, "Resources:\n" + waf_logging("aws-waf-logs-b/1"), {}).status == \
        "CREATE_COMPLETE"  # fmt: skip


def test_waf_logging_takes_one_resource_policy_slot_per_account_and_region():
    engine = StackEngine(DefaultEnvironment())
    assert engine.create("waf1", ACCOUNT, REGION, "Resources:\n" + waf_logging("aws-waf-logs-1"), {}).status == \
        "CREATE_COMPLETE"  # fmt: skip
    # a second log group shares the delivery policy: still one slot
    assert engine.create("waf2", ACCOUNT, REGION, "Resources:\n" + waf_logging("aws-waf-logs-2"), {}).status == \
        "CREATE_COMPLETE"  # fmt: skip
    created = [engine.create(f"p{i}", ACCOUNT, REGION, "Resources:\n" + POLICY.format(i), {}).status for i in range(10)]
    assert created == ["CREATE_COMPLETE"] * 9 + ["ROLLBACK_COMPLETE"]  # 9 own + the delivery policy = 10


def test_the_default_vpc_and_four_more_fill_a_region_and_the_sixth_address_fails():
    engine = StackEngine(DefaultEnvironment())
    vpc = "  Vpc:\n    Type: AWS::EC2::VPC\n    Properties:\n      CidrBlock: 10.0.0.0/16\n"
    address = "  Address:\n    Type: AWS::EC2::EIP\n    Properties:\n      Domain: vpc\n"
    statuses = [engine.create(f"v{i}", ACCOUNT, REGION, "Resources:\n" + vpc, {}).status for i in range(5)]
    assert statuses == ["CREATE_COMPLETE"] * 4 + ["ROLLBACK_COMPLETE"]
    assert engine.create("elsewhere", ACCOUNT, "us-east-1", "Resources:\n" + vpc, {}).status == "CREATE_COMPLETE"
    statuses = [engine.create(f"a{i}", ACCOUNT, REGION, "Resources:\n" + address, {}).status for i in range(6)]
    assert statuses == ["CREATE_COMPLETE"] * 5 + ["ROLLBACK_COMPLETE"]
    raised = StackEngine(DefaultEnvironment(quotas={"vpcs_per_region": 20}))
    assert all(raised.create(f"v{i}", ACCOUNT, REGION, "Resources:\n" + vpc, {}).status == "CREATE_COMPLETE"
               for i in range(19))  # fmt: skip
