"""examples/ci/: the GitHub Actions workflow plans pull requests and deploys main, and the roles it assumes grant
what those commands need and trust only those events."""

from __future__ import annotations

import re

import yaml
from cfn_tools import load_yaml

from generator.render import CI_ROLES_FILE, EXAMPLES_CI
from stacksets import naming

WORKFLOW = yaml.safe_load((EXAMPLES_CI / "github-actions.yml").read_text(encoding="utf-8"))
ROLES = load_yaml((EXAMPLES_CI / CI_ROLES_FILE).read_text(encoding="utf-8"))
FULL_SHA = re.compile(r"^[\w.-]+/[\w.-]+@[0-9a-f]{40}$")


def runs(job: str) -> list[str]:
    return [step["run"] for step in WORKFLOW["jobs"][job]["steps"] if "run" in step]


def uses(job: str) -> list[str]:
    return [step["uses"] for step in WORKFLOW["jobs"][job]["steps"] if "uses" in step]


def test_a_pull_request_is_checked_and_planned_and_main_is_deployed():
    # PyYAML reads the key `on` as True (YAML 1.1), as actionlint does not
    assert set(WORKFLOW[True]) == {"pull_request", "push"}
    plan, deploy = WORKFLOW["jobs"]["plan"], WORKFLOW["jobs"]["deploy"]
    assert plan["if"] == "github.event_name == 'pull_request'"
    assert deploy["if"] == "github.event_name == 'push' && github.ref == 'refs/heads/main'"
    commands = "\n".join(runs("plan"))
    order = [commands.index(f"python deploy.py {command}") for command in ("render --check", "validate", "plan")]
    assert order == sorted(order)
    assert ">> \"$GITHUB_STEP_SUMMARY\"" in commands and "deploy.py cost" in commands
    assert not any("deploy.py deploy" in command for command in runs("plan"))
    assert runs("deploy")[-1] == "python deploy.py deploy --yes"


def test_each_job_assumes_its_own_role_with_the_least_permissions():
    assert WORKFLOW["permissions"] == {}
    for job, role in (("plan", "RSTUDIO_PLAN_ROLE_ARN"), ("deploy", "RSTUDIO_DEPLOY_ROLE_ARN")):
        assert WORKFLOW["jobs"][job]["permissions"] == {"contents": "read", "id-token": "write"}
        credentials = [step["with"] for step in WORKFLOW["jobs"][job]["steps"]
                       if step.get("uses", "").startswith("aws-actions/configure-aws-credentials@")]  # fmt: skip
        assert [step["role-to-assume"] for step in credentials] == [f"${{{{ vars.{role} }}}}"]


def test_deploys_never_overlap_and_run_from_the_environment_the_deploy_role_trusts():
    deploy = WORKFLOW["jobs"]["deploy"]
    assert deploy["concurrency"] == {"group": "rstudio-fargate-deploy", "cancel-in-progress": False}
    assert deploy["environment"] == ROLES["Parameters"]["DeployEnvironment"]["Default"]


def test_every_action_is_pinned_to_a_full_commit_with_its_version_named():
    text = (EXAMPLES_CI / "github-actions.yml").read_text(encoding="utf-8")
    pinned = uses("plan") + uses("deploy")
    assert pinned and all(FULL_SHA.match(action) for action in pinned), pinned
    for action in set(pinned):
        assert re.search(re.escape(action) + r"  # v\d+\.\d+\.\d+\n", text), action


def trust(role: str) -> dict:
    (statement,) = ROLES["Resources"][role]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    return statement


def actions(role: str) -> set[str]:
    (policy,) = ROLES["Resources"][role]["Properties"]["Policies"]
    return {action for statement in policy["PolicyDocument"]["Statement"] for action in statement["Action"]}


def test_the_plan_role_trusts_pull_requests_and_the_deploy_role_the_environment():
    host = "token.actions.githubusercontent.com"
    for role, subject in (("PlanRole", "repo:${GitHubOrg}/${GitHubRepo}:pull_request"),
                          ("DeployRole", "repo:${GitHubOrg}/${GitHubRepo}:environment:${DeployEnvironment}")):
        statement = trust(role)
        assert statement["Action"] == ["sts:AssumeRoleWithWebIdentity"]
        condition = statement["Condition"]["StringEquals"]
        assert condition[f"{host}:aud"] == "sts.amazonaws.com"
        assert condition[f"{host}:sub"] == {"Fn::Sub": subject}


def test_the_plan_role_writes_nothing_and_reads_the_member_accounts_through_the_reader_role():
    plan = actions("PlanRole")
    writes = re.compile(r":(Create|Update|Delete|Put|Start|Stop|Pass|Detect)")
    assert not [action for action in plan if writes.search(action)], plan
    assert {"cloudformation:DescribeStackSet", "cloudformation:ListStackInstances",
            "organizations:ListChildren", "sts:AssumeRole"} <= plan  # fmt: skip
    (policy,) = ROLES["Resources"]["PlanRole"]["Properties"]["Policies"]
    assumed = [resource for statement in policy["PolicyDocument"]["Statement"]
               if statement["Action"] == ["sts:AssumeRole"] for resource in statement["Resource"]]  # fmt: skip
    assert assumed == [{"Fn::Sub": f"arn:${{AWS::Partition}}:iam::*:role/{naming.DEPLOY_READER_ROLE}"}]


def test_the_deploy_role_adds_the_stackset_writes_to_what_the_plan_role_reads():
    deploy = actions("DeployRole")
    assert actions("PlanRole") < deploy
    assert {"cloudformation:CreateStackSet", "cloudformation:UpdateStackInstances", "s3:PutObject"} <= deploy
    (policy,) = ROLES["Resources"]["DeployRole"]["Properties"]["Policies"]
    stacksets = [statement for statement in policy["PolicyDocument"]["Statement"]
                 if "cloudformation:CreateStackSet" in statement["Action"]]  # fmt: skip
    assert [statement["Resource"] for statement in stacksets] == [[
        {"Fn::Sub": "arn:${AWS::Partition}:cloudformation:*:${AWS::AccountId}:stackset/rstudio-*:*"}]]


def test_the_oidc_provider_is_created_only_when_the_account_has_none():
    provider = ROLES["Resources"]["GitHubOidcProvider"]
    assert provider["Condition"] == "CreateProvider"
    assert ROLES["Conditions"]["CreateProvider"] == {"Fn::Equals": [{"Ref": "ExistingProviderArn"}, ""]}
    assert trust("PlanRole")["Principal"]["Federated"] == {
        "Fn::If": ["CreateProvider", {"Ref": "GitHubOidcProvider"}, {"Ref": "ExistingProviderArn"}]}
