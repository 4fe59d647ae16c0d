"""The house rules catch what they promise to catch (each rule is shown failing once)."""

from __future__ import annotations

import pytest

from generator.render import HEADER
from stacksets.template_checks import check_template, lint_template

GOOD = HEADER + """Resources:
  DataBucket:
    DeletionPolicy: Retain
    Properties:
      BucketName: !Sub 'data-${AWS::AccountId}'
    Type: AWS::S3::Bucket
    UpdateReplacePolicy: Retain
"""


def rules(text: str) -> set[str]:
    return {finding.rule for finding in check_template("t.yaml", text)}


def test_a_clean_template_has_no_findings():
    assert rules(GOOD) == set()


@pytest.mark.parametrize("text,rule", [
    (GOOD.replace("    DeletionPolicy: Retain\n", ""), "retain"),
    (GOOD.replace("    UpdateReplacePolicy: Retain\n", "    UpdateReplacePolicy: Delete\n"), "retain"),
    (GOOD.replace("!Sub 'data-${AWS::AccountId}'", "arn:aws:s3:::data"), "partition"),
    (GOOD.replace("!Sub 'data-${AWS::AccountId}'", "AKIAABCDEFGHIJKLMNOP"), "secret"),
    (GOOD + "  Db:\n    Type: AWS::RDS::DBInstance\n    Properties:\n      MasterUserPassword: hunter2\n", "secret"),
    (GOOD + "Parameters:\n  DbPassword:\n    Type: String\n", "secret"),
    (GOOD.removeprefix(HEADER), "header"),
    (GOOD + "  Role:\n    Type: AWS::IAM::Role\n    Properties:\n      Policies:\n        - PolicyDocument:\n"
            "            Statement:\n              - Effect: Allow\n                Action: 's3:*'\n"
            "                Resource: '*'\n", "iam"),
    (GOOD + "# " + "x" * 1_000_001 + "\n", "size"),
])  # fmt: skip
def test_each_rule_fires(text, rule):
    assert rule in rules(text)


def test_deny_statements_may_use_wildcard_actions():
    text = GOOD + (
        "  Policy:\n    Type: AWS::S3::BucketPolicy\n    Properties:\n      Bucket: b\n      PolicyDocument:\n"
        "        Statement:\n          - Effect: Deny\n            Action: 's3:*'\n            Principal: '*'\n"
        "            Resource: '*'\n"
    )
    assert "iam" not in rules(text)


def test_cfn_lint_reports_errors_with_the_rule_id():
    text = GOOD.replace("!Sub 'data-${AWS::AccountId}'", "Not_A_Valid_Bucket")
    findings = lint_template("t.yaml", text, ("eu-west-1",))
    assert any(finding.rule == "cfn-lint E3031" for finding in findings)
