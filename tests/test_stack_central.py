from __future__ import annotations

import json
from typing import Any

import pytest

from generator.naming import ECR_REPOSITORIES
from generator.stacks import central
from stacksets.config import Config, parse_config


def _repositories(cfg: Config) -> dict[str, dict[str, Any]]:
    resources = central.build(cfg).to_dict()["Resources"]
    assert {r["Type"] for r in resources.values()} == {"AWS::ECR::Repository"}
    return {r["Properties"]["RepositoryName"]: r for r in resources.values()}


def _rules(repository: dict[str, Any]) -> list[dict[str, Any]]:
    text = repository["Properties"]["LifecyclePolicy"]["LifecyclePolicyText"]
    return sorted(json.loads(text)["rules"], key=lambda rule: rule["rulePriority"])


def test_one_repository_per_image(cfg: Config) -> None:
    repositories = _repositories(cfg)
    assert set(repositories) == set(ECR_REPOSITORIES) == {"rstudio", "shiny", "bastion"}
    assert "RstudioRepository" in central.build(cfg).to_dict()["Resources"]


@pytest.mark.parametrize("name", ECR_REPOSITORIES)
def test_repository_is_immutable_scanned_and_retained(cfg: Config, name: str) -> None:
    repository = _repositories(cfg)[name]
    properties = repository["Properties"]
    assert properties["ImageTagMutability"] == "IMMUTABLE"
    assert properties["ImageScanningConfiguration"] == {"ScanOnPush": True}
    assert properties["EncryptionConfiguration"] == {"EncryptionType": "AES256"}
    assert repository["DeletionPolicy"] == repository["UpdateReplacePolicy"] == "Retain"


@pytest.mark.parametrize("name", ECR_REPOSITORIES)
def test_kms_check_is_skipped_with_a_reason(cfg: Config, name: str) -> None:
    skips = _repositories(cfg)[name]["Metadata"]["checkov"]["skip"]
    assert [skip["id"] for skip in skips] == ["CKV_AWS_136"]
    assert "organization" in skips[0]["comment"]


def test_only_the_organization_may_pull(cfg: Config, example_data: dict[str, Any]) -> None:
    for repository in _repositories(cfg).values():
        assert repository["Properties"]["RepositoryPolicyText"]["Statement"] == [
            {
                "Sid": "PullFromOrganization",
                "Effect": "Allow",
                "Principal": "*",
                "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"],
                "Condition": {"StringEquals": {"aws:PrincipalOrgID": "o-a1b2c3d4e5"}},
            }
        ]

    example_data["organization"]["id"] = "o-zzzzzzzzzz"
    for repository in _repositories(parse_config(example_data)).values():
        statement = repository["Properties"]["RepositoryPolicyText"]["Statement"][0]
        assert statement["Condition"] == {"StringEquals": {"aws:PrincipalOrgID": "o-zzzzzzzzzz"}}


def test_lifecycle_rules_come_from_config(example_data: dict[str, Any]) -> None:
    example_data["central"]["ecr"] = {"keep_tagged_images": 12, "untagged_expiry_days": 3}
    for repository in _repositories(parse_config(example_data)).values():
        untagged, tagged = _rules(repository)
        assert untagged["selection"] == {
            "tagStatus": "untagged",
            "countType": "sinceImagePushed",
            "countUnit": "days",
            "countNumber": 3,
        }
        assert tagged["selection"] == {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 12}
        assert untagged["action"] == tagged["action"] == {"type": "expire"}


def test_lifecycle_any_rule_is_evaluated_last(cfg: Config) -> None:
    rules = _rules(_repositories(cfg)["rstudio"])
    priorities = [rule["rulePriority"] for rule in rules]
    assert len(set(priorities)) == len(priorities)
    # ECR requires the tagStatus "any" rule to have the highest priority; the untagged rule before it claims the
    # untagged images, so the count only ever expires tagged ones.
    assert [rule["selection"]["tagStatus"] for rule in rules] == ["untagged", "any"]


def test_outputs_uri_and_arn_of_each_repository(cfg: Config) -> None:
    outputs = central.build(cfg).to_dict()["Outputs"]
    assert outputs["ShinyRepositoryUri"]["Value"] == {"Fn::GetAtt": ["ShinyRepository", "RepositoryUri"]}
    assert outputs["ShinyRepositoryArn"]["Value"] == {"Fn::GetAtt": ["ShinyRepository", "Arn"]}
    assert len(outputs) == 2 * len(ECR_REPOSITORIES)
