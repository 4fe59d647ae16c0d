"""rstudio-fargate bootstrap: read-only role the orchestrator in the admin account assumes to read stack instances.

Deployed by the `rstudio-bootstrap` StackSet to every account of the bootstrap OUs (or the listed accounts). The
orchestrator reads the outputs of stack instances in other accounts through this role and, when an instance fails,
the stack events that say why; the preflight check reads whether the welcome e-mail's SES identities are verified.
It grants nothing that writes.
"""

from __future__ import annotations

from awacs import cloudformation, ses, sts
from awacs.aws import AWSPrincipal
from troposphere import GetAtt, Output, Template
from troposphere.iam import Policy as RolePolicy
from troposphere.iam import Role

from generator.common import new_template
from generator.iam import Allow, Statement, account_root, document, regional_arn
from stacksets import naming
from stacksets.config import Config

# Stack instances of a StackSet are named "StackSet-<stackset name>-<uuid>"; every StackSet of this project is
# named "rstudio-...", and stack instances live in whichever region the config puts an instance in.
INSTANCE_STACKS = f"stack/StackSet-{naming.PREFIX}-*"


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
    policy = document(read_stacks, list_stacks, ses_verification)
    return t.add_resource(
        Role(
            "DeployReaderRole",
            RoleName=naming.DEPLOY_READER_ROLE,
            Description="Read-only: lets the rstudio-fargate orchestrator read stack instances and SES verification",
            AssumeRolePolicyDocument=trust,
            MaxSessionDuration=3600,
            Policies=[RolePolicy(PolicyName="read-stack-instances", PolicyDocument=policy)],
        )
    )


def add_outputs(t: Template, role: Role) -> Output:
    return t.add_output(
        Output("DeployReaderRoleArn", Description="Role the orchestrator assumes", Value=GetAtt(role, "Arn"))
    )
