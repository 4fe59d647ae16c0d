"""rstudio-fargate account logs: the one CloudWatch Logs resource policy that lets DataSync write task logs.

Deployed by the `rstudio-logs` StackSet to every instance account, in every Region that holds an instance, before the
instance StackSets. DataSync uses no role for its task logs, so it needs a resource policy on the log groups, and an
account holds at most 10 resource policies per Region (CloudWatch Logs quotas). One policy per account and Region,
covering the DataSync log groups of every instance there, leaves the other nine to the account's owners however
many instances it runs. (An account in `accounts × regions` that runs no instance in that Region gets the policy
too: StackSets deploy to the cross product, and the policy grants nothing but log writes to groups that do not exist.)
"""

from __future__ import annotations

import awacs.logs
from awacs.aws import ArnLike, Principal, StringEquals
from troposphere import Sub, Template
from troposphere.logs import ResourcePolicy

from generator.common import new_template
from generator.iam import Allow, Statement, conditions, document
from stacksets.naming import PREFIX

# generator/instance/datasync.py names each instance's task log group /rstudio/<instance>/datasync/<stack id>.
DATASYNC_LOG_GROUPS = f"/{PREFIX}/*/datasync/*"
POLICY_NAME = f"{PREFIX}-datasync-task-logs"


def build() -> Template:
    t = new_template(__doc__)
    add_datasync_log_policy(t)
    return t


def add_datasync_log_policy(t: Template) -> ResourcePolicy:
    # The policy document is a JSON string, so the pseudo parameters go through Sub rather than Ref.
    statement = Statement(
        Sid="DataSyncTaskLogs", Effect=Allow, Principal=Principal("Service", "datasync.amazonaws.com"),
        Action=[awacs.logs.CreateLogStream, awacs.logs.PutLogEvents],
        Resource=[f"arn:${{AWS::Partition}}:logs:${{AWS::Region}}:${{AWS::AccountId}}:log-group:{DATASYNC_LOG_GROUPS}"],
        # Any DataSync task of this account and region: the tasks live in the instance stacks.
        Condition=conditions(
            StringEquals("aws:SourceAccount", "${AWS::AccountId}"),
            ArnLike("aws:SourceArn", "arn:${AWS::Partition}:datasync:${AWS::Region}:${AWS::AccountId}:task/*")),
    )  # fmt: skip
    # Only datasync.amazonaws.com: delivery.logs.amazonaws.com delivers vended logs, which DataSync tasks do not use.
    return t.add_resource(ResourcePolicy("DataSyncLogResourcePolicy", PolicyName=POLICY_NAME,
                                         PolicyDocument=Sub(document(statement).to_json(indent=None,
                                                                                        sort_keys=True))))  # fmt: skip
