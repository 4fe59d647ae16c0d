"""rstudio-fargate bootstrap: read-only role the orchestrator in the admin account assumes to read stack instances.

Deployed by the `rstudio-bootstrap` StackSet to every account of the bootstrap OUs (or the listed accounts). The
orchestrator reads the outputs of stack instances in other accounts through this role and, when an instance fails,
the stack events that say why; the preflight check reads whether the welcome e-mail's SES identities are verified.
`deploy.py connect` finds a server's running task (and the bastion's public IP) through it too. It grants nothing
that writes.
"""

from __future__ import annotations

from awacs import cloudformation, ec2, ecs, ses, sts
from awacs.aws import ArnLike, AWSPrincipal, Condition
from troposphere import GetAtt, Output, Sub, Template
from troposphere.iam import Policy as RolePolicy
from troposphere.iam import Role

from generator.common import new_template
from generator.iam import Allow, Statement, account_root, document, regional_arn
from stacksets import naming
from stacksets.config import Config

# Stack instances of a StackSet are named "StackSet-<stackset name>-<uuid>"; every StackSet of this project is
# named "rstudio-...", and stack instances live in whichever region the config puts an instance in.
INSTANCE_STACKS = f"stack/StackSet-{naming.PREFIX}-*"
# Every instance's ECS cluster is "rstudio-<instance>" (generator/naming.py cluster_name); task ARNs carry it.
PROJECT_CLUSTERS = f"cluster/{naming.PREFIX}-*"
PROJECT_TASKS = f"task/{naming.PREFIX}-*/*"


def build(cfg: Config) -> Template:
    t = new_template(__doc__)
    role = add_reader_role(t, cfg)
    add_outputs(t, role)
    return t


def add_reader_role(t: Template, cfg: Config) -> Role:
    # Only the admin account is trusted; which of its principals may assume the role is decided by that account's
    # own IAM policies (the orchestrator runs as whoever operates it, so there is no fixed role ARN to pin).
    trust = document(
        Statement(
            Effect=Allow,
            Principal=AWSPrincipal(account_root(cfg.accounts.admin)),  # type: ignore[arg-type]
            Action=[sts.AssumeRole],
        )
    )
    read_stacks = Statement(
        Sid="ReadProjectStackInstances",
        Effect=Allow,
        Action=[cloudformation.DescribeStacks, cloudformation.DescribeStackEvents],
        Resource=[regional_arn("cloudformation", INSTANCE_STACKS, region="*")],
    )
    # ListStacks has no resource-level permissions: IAM only accepts Resource "*" for it.
    list_stacks = Statement(Sid="ListStacks", Effect=Allow, Action=[cloudformation.ListStacks], Resource=["*"])
    # SES preflight (stacksets/preflight.py). GetIdentityVerificationAttributes has no resource-level permissions
    # either, and it reveals only whether addresses and domains are verified.
    ses_verification = Statement(Sid="ReadSesVerification", Effect=Allow,
                                 Action=[ses.GetIdentityVerificationAttributes], Resource=["*"])  # fmt: skip
    policy = document(read_stacks, list_stacks, ses_verification, *connect_statements())
    return t.add_resource(
        Role(
            "DeployReaderRole",
            RoleName=naming.DEPLOY_READER_ROLE,
            Description="Read-only: lets the rstudio-fargate orchestrator read stack instances, SES verification and "
                        "running ECS tasks",
            AssumeRolePolicyDocument=trust,
            MaxSessionDuration=3600,
            Policies=[RolePolicy(PolicyName="read-stack-instances", PolicyDocument=policy)],
        )
    )


def connect_statements() -> list[Statement]:
    """What `deploy.py connect` reads (stacksets/connect.py): the running tasks of the project's clusters, and the
    network interface that carries the bastion's public IP."""
    # ListTasks is authorized against container instances, never a cluster: listing a whole cluster's tasks needs
    # Resource "*", narrowed by the ecs:cluster condition key, which takes the cluster's ARN (cdklabs/construct-hub
    # #1207; the Service Authorization Reference for ECS).
    list_tasks = Statement(Sid="ListProjectTasks", Effect=Allow, Action=[ecs.ListTasks], Resource=["*"],
                           Condition=Condition(ArnLike("ecs:cluster", Sub(
                               f"arn:${{AWS::Partition}}:ecs:*:${{AWS::AccountId}}:{PROJECT_CLUSTERS}"))))  # fmt: skip
    describe_tasks = Statement(Sid="DescribeProjectTasks", Effect=Allow, Action=[ecs.DescribeTasks],
                               Resource=[regional_arn("ecs", PROJECT_TASKS, region="*")])  # fmt: skip
    # DescribeNetworkInterfaces has no resource-level permissions (Resource "*" only); it reveals addresses, never
    # traffic, and connect asks it for the bastion task's interface alone.
    interfaces = Statement(Sid="ReadTaskNetworkInterfaces", Effect=Allow, Action=[ec2.DescribeNetworkInterfaces],
                           Resource=["*"])  # fmt: skip
    return [list_tasks, describe_tasks, interfaces]


def add_outputs(t: Template, role: Role) -> Output:
    return t.add_output(
        Output("DeployReaderRoleArn", Description="Role the orchestrator assumes", Value=GetAtt(role, "Arn"))
    )
