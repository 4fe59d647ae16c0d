"""rstudio-fargate central: ECR repositories for the rstudio, shiny and bastion images, pullable by the organization.

Deployed by the `rstudio-central` StackSet to the central (tooling) account in the default region. Tags are
immutable, so an instance pinned to a tag in config.yaml always runs the image that was reviewed; every push is
scanned. Instance accounts pull across accounts through the repository policy, which admits principals of the
organization only.
"""

from __future__ import annotations

import json
from typing import NamedTuple

from awacs import ecr
from awacs.aws import Condition, PolicyDocument, Principal, StringEquals
from troposphere import GetAtt, Output, Template
from troposphere.ecr import (
    EncryptionConfiguration,
    ImageScanningConfiguration,
    LifecyclePolicy,
    Repository,
)

from generator.common import new_template, retain, skip_checkov
from generator.iam import Allow, Statement, document
from generator.naming import ECR_REPOSITORIES, logical_id
from stacksets.config import Config, EcrSettings

PULL_ACTIONS = [ecr.BatchGetImage, ecr.GetDownloadUrlForLayer, ecr.BatchCheckLayerAvailability]


class RepositoryOutputs(NamedTuple):
    uri: Output
    arn: Output


def build(cfg: Config) -> Template:
    t = new_template(__doc__)
    for name in ECR_REPOSITORIES:
        repository = add_repository(t, cfg, name)
        add_repository_outputs(t, name, repository)
    return t


def add_repository(t: Template, cfg: Config, name: str) -> Repository:
    repository = Repository(
        logical_id(name, "Repository"),
        RepositoryName=name,
        ImageTagMutability="IMMUTABLE",
        ImageScanningConfiguration=ImageScanningConfiguration(ScanOnPush=True),
        # Encrypted at rest with S3-managed keys: access is the repository policy's job, and a customer KMS key
        # would need a second, org-wide grant in its key policy that narrows nothing.
        EncryptionConfiguration=EncryptionConfiguration(EncryptionType="AES256"),
        LifecyclePolicy=LifecyclePolicy(LifecyclePolicyText=lifecycle_policy_text(cfg.central.ecr)),
        RepositoryPolicyText=pull_policy(cfg.organization.id),
    )
    skip_checkov(
        repository,
        CKV_AWS_136="AES256 on purpose: every account of the organization pulls, and a KMS key would add an "
        "org-wide key policy without narrowing access; images hold no secrets",
    )
    return t.add_resource(retain(repository))


def lifecycle_policy_text(settings: EcrSettings) -> str:
    """Untagged layers go after a few days; of the tagged images only the newest N stay.

    ECR hands each image to the first rule (lowest rulePriority) whose tag status matches it, and a rule with
    tagStatus "any" must come last: so rule 1 owns every untagged image and the count in rule 2 sees tagged ones only.
    """
    rules = [
        {
            "rulePriority": 1,
            "description": f"Expire untagged images after {settings.untagged_expiry_days} days",
            "selection": {
                "tagStatus": "untagged",
                "countType": "sinceImagePushed",
                "countUnit": "days",
                "countNumber": settings.untagged_expiry_days,
            },
            "action": {"type": "expire"},
        },
        {
            "rulePriority": 2,
            "description": f"Keep the newest {settings.keep_tagged_images} tagged images",
            "selection": {
                "tagStatus": "any",
                "countType": "imageCountMoreThan",
                "countNumber": settings.keep_tagged_images,
            },
            "action": {"type": "expire"},
        },
    ]
    return json.dumps({"rules": rules}, sort_keys=True)


def pull_policy(organization_id: str) -> PolicyDocument:
    # Principal "*" is scoped by aws:PrincipalOrgID: instance accounts join and leave the organization without
    # this policy changing, and nothing outside the organization can pull.
    statement = Statement(
        Sid="PullFromOrganization",
        Effect=Allow,
        Principal=Principal("*"),
        Action=PULL_ACTIONS,
        Condition=Condition(StringEquals("aws:PrincipalOrgID", organization_id)),
    )
    return document(statement)


def add_repository_outputs(t: Template, name: str, repository: Repository) -> RepositoryOutputs:
    uri = Output(logical_id(name, "RepositoryUri"), Description=f"{name} image repository URI",
                 Value=GetAtt(repository, "RepositoryUri"))  # fmt: skip
    arn = Output(logical_id(name, "RepositoryArn"), Description=f"{name} image repository ARN",
                 Value=GetAtt(repository, "Arn"))  # fmt: skip
    t.add_output([uri, arn])
    return RepositoryOutputs(uri, arn)
