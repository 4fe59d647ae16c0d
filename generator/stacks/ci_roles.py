"""rstudio-fargate CI roles: GitHub Actions plans pull requests and deploys main with these, through OIDC.

Not a StackSet: deployed once, by hand, in the admin account (README, Deploy on merge), and written by render to
examples/ci/ci-roles.yaml next to the workflow that uses it. It does not depend on config.yaml.

- The plan role is for pull requests. A pull request can change the workflow it runs, so this role holds nothing
  that writes: it reads the StackSets, the organization and, through `rstudio-deploy-reader`, the member accounts'
  stack instances. It may not assume `rstudio-image-publisher` (which can start builds), so the plan of a pull
  request says ECR could not be read instead of listing missing image tags.
- The deploy role is for the deploy job of the GitHub environment, which the repository's protection rules guard
  (only main, reviewers): it writes the `rstudio-*` StackSets and the template staging bucket, and assumes the
  reader and publisher roles.
"""

from __future__ import annotations

from awacs import cloudformation, iam, organizations, s3, sts
from awacs.aws import Condition, Principal, StringEquals
from troposphere import Equals, GetAtt, If, Output, Parameter, Ref, Sub, Template
from troposphere.iam import OIDCProvider, Role
from troposphere.iam import Policy as RolePolicy

from generator.common import new_template
from generator.iam import Allow, Statement, arn, document, regional_arn
from stacksets import naming

GITHUB_TOKEN_HOST = "token.actions.githubusercontent.com"
STS_AUDIENCE = "sts.amazonaws.com"
PLAN_ROLE = f"{naming.PREFIX}-ci-plan"
DEPLOY_ROLE = f"{naming.PREFIX}-ci-deploy"
# Every StackSet of the project is named rstudio-...; a StackSet's ARN ends in its name and a generated id.
STACKSETS = regional_arn("cloudformation", f"stackset/{naming.PREFIX}-*:*", region="*")
# stacksets/staging.py: templates over the inline limit go through this bucket of the admin account.
STAGING_BUCKET = "rstudio-fargate-templates-${AWS::AccountId}-*"
# A deploy runs as long as GitHub lets a job run (6 hours on hosted runners); the session must not end sooner.
DEPLOY_SESSION_SECONDS = 6 * 3600
# Self-managed StackSets are created with the administration role of AWS's guide, which the caller passes.
ADMINISTRATION_ROLE = "AWSCloudFormationStackSetAdministrationRole"


def build() -> Template:
    t = new_template(__doc__)
    params = add_parameters(t)
    provider = add_provider(t, params["ExistingProviderArn"])
    plan = add_plan_role(t, provider)
    deploy = add_deploy_role(t, provider)
    t.add_output(Output("PlanRoleArn", Description="vars.RSTUDIO_PLAN_ROLE_ARN of the workflow",
                        Value=GetAtt(plan, "Arn")))  # fmt: skip
    t.add_output(Output("DeployRoleArn", Description="vars.RSTUDIO_DEPLOY_ROLE_ARN of the workflow",
                        Value=GetAtt(deploy, "Arn")))  # fmt: skip
    return t


def add_parameters(t: Template) -> dict[str, Parameter]:
    name = r"[A-Za-z0-9_.-]+"
    return {
        "GitHubOrg": t.add_parameter(Parameter("GitHubOrg", Type="String", AllowedPattern=name,
                                               Description="GitHub organization or user that owns the repository")),
        "GitHubRepo": t.add_parameter(Parameter("GitHubRepo", Type="String", AllowedPattern=name,
                                                Description="Repository name (without the organization)")),
        "DeployEnvironment": t.add_parameter(Parameter(
            "DeployEnvironment", Type="String", Default="production", AllowedPattern=name,
            Description="GitHub environment of the deploy job; its protection rules decide who and what deploys")),
        "ExistingProviderArn": t.add_parameter(Parameter(
            "ExistingProviderArn", Type="String", Default="",
            AllowedPattern=r"(arn:[^:]+:iam::\d{12}:oidc-provider/.+)?",
            Description="ARN of the account's GitHub OIDC provider if it has one already (an account holds one per "
                        "URL); empty creates it")),
    }  # fmt: skip


def add_provider(t: Template, existing: Parameter) -> If:
    t.add_condition("CreateProvider", Equals(Ref(existing), ""))
    # No thumbprints: IAM checks GitHub's certificate against its library of trusted CAs (IAM API reference,
    # UpdateOpenIDConnectProviderThumbprint).
    provider = t.add_resource(OIDCProvider(
        "GitHubOidcProvider", Condition="CreateProvider", Url=f"https://{GITHUB_TOKEN_HOST}",
        ClientIdList=[STS_AUDIENCE],
    ))  # fmt: skip
    return If("CreateProvider", Ref(provider), Ref(existing))


def _trust(provider: If, subject: Sub) -> object:
    return document(Statement(
        Effect=Allow,
        Principal=Principal("Federated", provider),  # type: ignore[arg-type]
        Action=[sts.AssumeRoleWithWebIdentity],
        Condition=Condition(StringEquals({
            f"{GITHUB_TOKEN_HOST}:aud": STS_AUDIENCE, f"{GITHUB_TOKEN_HOST}:sub": subject,
        })),
    ))  # fmt: skip


def _read_statements() -> list[Statement]:
    """What plan, status and validate read in the admin account and through the member accounts' reader role."""
    return [
        Statement(Sid="ReadProjectStackSets", Effect=Allow, Resource=[STACKSETS], Action=[
            cloudformation.DescribeStackSet, cloudformation.DescribeStackSetOperation,
            cloudformation.ListStackInstances, cloudformation.DescribeStackInstance,
            cloudformation.ListStackSetOperations, cloudformation.ListStackSetOperationResults,
        ]),
        # ListStackSets and the organization's structure have no resource-level permissions (IAM accepts only "*").
        Statement(Sid="ListStackSets", Effect=Allow, Action=[cloudformation.ListStackSets], Resource=["*"]),
        Statement(Sid="ReadOrganization", Effect=Allow, Resource=["*"], Action=[
            organizations.DescribeOrganization, organizations.ListChildren, organizations.ListAccountsForParent,
            # StackSets refuses CallAs DELEGATED_ADMIN without it (docs/architecture.md, Permission models)
            organizations.ListDelegatedAdministrators,
        ]),
        Statement(Sid="AssumeReaderRole", Effect=Allow, Action=[sts.AssumeRole],
                  Resource=[arn("iam", f"role/{naming.DEPLOY_READER_ROLE}", account="*")]),
    ]  # fmt: skip


def add_plan_role(t: Template, provider: If) -> Role:
    subject = Sub("repo:${GitHubOrg}/${GitHubRepo}:pull_request")
    return t.add_resource(Role(
        "PlanRole", RoleName=PLAN_ROLE, MaxSessionDuration=3600,
        Description="rstudio-fargate CI: render --check, validate and plan of a pull request; reads only",
        AssumeRolePolicyDocument=_trust(provider, subject),
        Policies=[RolePolicy(PolicyName="plan", PolicyDocument=document(*_read_statements()))],
    ))  # fmt: skip


def add_deploy_role(t: Template, provider: If) -> Role:
    subject = Sub("repo:${GitHubOrg}/${GitHubRepo}:environment:${DeployEnvironment}")
    write = [
        Statement(Sid="WriteProjectStackSets", Effect=Allow, Resource=[STACKSETS], Action=[
            cloudformation.CreateStackSet, cloudformation.UpdateStackSet, cloudformation.DeleteStackSet,
            cloudformation.CreateStackInstances, cloudformation.UpdateStackInstances,
            cloudformation.DeleteStackInstances, cloudformation.StopStackSetOperation,
        ]),
        # Instance operations are also authorized against their targets and the resource types the templates use
        # (IAM service authorization reference, AWS CloudFormation: stackset-target, type).
        Statement(Sid="TargetStackInstances", Effect=Allow, Action=[
            cloudformation.CreateStackInstances, cloudformation.UpdateStackInstances,
            cloudformation.DeleteStackInstances,
        ], Resource=[regional_arn("cloudformation", "stackset-target/*", region="*"),
                     regional_arn("cloudformation", "type/resource/*", region="*")]),
        Statement(Sid="StageLargeTemplates", Effect=Allow, Action=[
            s3.CreateBucket, s3.PutEncryptionConfiguration, s3.PutBucketPublicAccessBlock, s3.ListBucket,
            s3.GetObject, s3.PutObject,
        ], Resource=[arn("s3", STAGING_BUCKET), arn("s3", f"{STAGING_BUCKET}/*")]),
        Statement(Sid="AssumePublisherRole", Effect=Allow, Action=[sts.AssumeRole],
                  Resource=[arn("iam", f"role/{naming.IMAGE_PUBLISHER_ROLE}", account="*")]),
        Statement(Sid="PassAdministrationRole", Effect=Allow, Action=[iam.PassRole],
                  Resource=[arn("iam", f"role/{ADMINISTRATION_ROLE}", account="${AWS::AccountId}")],
                  Condition=Condition(StringEquals("iam:PassedToService", "cloudformation.amazonaws.com"))),
    ]  # fmt: skip
    return t.add_resource(Role(
        "DeployRole", RoleName=DEPLOY_ROLE, MaxSessionDuration=DEPLOY_SESSION_SECONDS,
        Description="rstudio-fargate CI: deploy --yes of main, from the protected GitHub environment",
        AssumeRolePolicyDocument=_trust(provider, subject),
        Policies=[RolePolicy(PolicyName="deploy", PolicyDocument=document(*_read_statements(), *write))],
    ))  # fmt: skip
