from __future__ import annotations

from typing import Any

from generator.stacks import bootstrap
from stacksets.config import Config, parse_config


def _role(cfg: Config) -> dict[str, Any]:
    resources = bootstrap.build(cfg).to_dict()["Resources"]
    roles = [r for r in resources.values() if r["Type"] == "AWS::IAM::Role"]
    assert len(resources) == len(roles) == 1
    return roles[0]["Properties"]


def _permission_statements(role: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for policy in role["Policies"] for s in policy["PolicyDocument"]["Statement"]]


def test_role_has_the_name_the_orchestrator_assumes(cfg: Config) -> None:
    role = _role(cfg)
    assert role["RoleName"] == "rstudio-deploy-reader"
    assert role["MaxSessionDuration"] == 3600


def test_only_the_admin_account_may_assume_the_role(cfg: Config, example_data: dict[str, Any]) -> None:
    statements = _role(cfg)["AssumeRolePolicyDocument"]["Statement"]
    assert statements == [
        {
            "Effect": "Allow",
            "Principal": {"AWS": {"Fn::Sub": "arn:${AWS::Partition}:iam::111111111111:root"}},
            "Action": ["sts:AssumeRole"],
        }
    ]

    example_data["accounts"]["admin"] = "999999999999"
    other = _role(parse_config(example_data))["AssumeRolePolicyDocument"]["Statement"]
    assert other[0]["Principal"] == {"AWS": {"Fn::Sub": "arn:${AWS::Partition}:iam::999999999999:root"}}


def test_permissions_are_read_only_cloudformation_ses_verification_and_tasks(cfg: Config) -> None:
    statements = _permission_statements(_role(cfg))
    assert all(s["Effect"] == "Allow" for s in statements)
    actions = {action for s in statements for action in s["Action"]}
    assert actions == {
        "cloudformation:DescribeStacks",
        "cloudformation:DescribeStackEvents",
        "cloudformation:ListStacks",
        # The SES preflight (stacksets/preflight.py) reads whether welcome e-mail identities are verified.
        "ses:GetIdentityVerificationAttributes",
        # `deploy.py connect` (stacksets/connect.py) finds a server's running task and the bastion's public IP.
        "ecs:ListTasks",
        "ecs:DescribeTasks",
        "ec2:DescribeNetworkInterfaces",
    }
    assert not any(a == "*" or a.endswith(":*") for a in actions)


def test_describe_is_scoped_to_this_projects_stack_instances(cfg: Config) -> None:
    statements = _permission_statements(_role(cfg))
    describe = [s for s in statements if "cloudformation:DescribeStacks" in s["Action"]]
    assert describe == [
        {
            "Sid": "ReadProjectStackInstances",
            "Effect": "Allow",
            "Action": ["cloudformation:DescribeStacks", "cloudformation:DescribeStackEvents"],
            "Resource": [
                {"Fn::Sub": "arn:${AWS::Partition}:cloudformation:*:${AWS::AccountId}:stack/StackSet-rstudio-*"}
            ],
        }
    ]
    # Resource "*" only for the actions that have no resource-level permissions, each in its own statement.
    unscoped = [s for s in statements if "*" in s["Resource"] and "Condition" not in s]
    assert [s["Action"] for s in unscoped] == [["cloudformation:ListStacks"], ["ses:GetIdentityVerificationAttributes"],
                                               ["ec2:DescribeNetworkInterfaces"]]  # fmt: skip
    assert all(s["Resource"] == ["*"] for s in unscoped)


def test_task_reads_are_scoped_to_this_projects_clusters(cfg: Config) -> None:
    by_action = {a: s for s in _permission_statements(_role(cfg)) for a in s["Action"]}
    # ListTasks is authorized against container instances, so a cluster's tasks are listed on "*" narrowed by the
    # cluster's ARN in the ecs:cluster condition key.
    assert by_action["ecs:ListTasks"]["Resource"] == ["*"]
    assert by_action["ecs:ListTasks"]["Condition"] == {"ArnLike": {"ecs:cluster": {
        "Fn::Sub": "arn:${AWS::Partition}:ecs:*:${AWS::AccountId}:cluster/rstudio-*"}}}  # fmt: skip
    assert by_action["ecs:DescribeTasks"]["Resource"] == [
        {"Fn::Sub": "arn:${AWS::Partition}:ecs:*:${AWS::AccountId}:task/rstudio-*/*"}]  # fmt: skip
    assert len(by_action["ecs:ListTasks"]["Action"]) == len(by_action["ecs:DescribeTasks"]["Action"]) == 1


def test_outputs_the_role_arn(cfg: Config) -> None:
    template = bootstrap.build(cfg).to_dict()
    assert template["Outputs"]["DeployReaderRoleArn"]["Value"] == {"Fn::GetAtt": ["DeployReaderRole", "Arn"]}
    assert template["Description"] == bootstrap.__doc__.splitlines()[0]
