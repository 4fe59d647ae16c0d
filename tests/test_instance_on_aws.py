"""The instance templates as a real account takes them (issue 11): each flow deploys the committed templates through
the AWS model, and each test failed on the templates before its fix."""

from __future__ import annotations

import pytest

from stacksets.config import Config
from stacksets.plan import Plan, build_plan
from tests.awsmodel_helpers import executor_for, model_for, scenario
from tests.conftest import TEMPLATES

DEV, PROD = "555555555555", "666666666666"


@pytest.fixture(scope="module")
def plan(cfg: Config) -> Plan:
    return build_plan(cfg, TEMPLATES)


def messages(report) -> dict[str, str]:
    return {name: result.message for name, result in report.results.items()}


def test_an_instance_account_with_a_lambda_concurrency_quota_of_10_deploys(cfg, plan, tmp_path):
    """A freshly vended account may start with 10 concurrent Lambda executions, and Lambda keeps min(100, quota) of
    them unreserved (rule lambda-concurrency): a function that reserves any concurrency fails the instance there."""
    fresh = {"lambda_concurrent_executions": 10}
    model = model_for(cfg, scenario(quotas={DEV: fresh, PROD: fresh}))
    report = executor_for(model, cfg, tmp_path).deploy(plan.only(["rstudio-dev", "rstudio-prod"]))
    assert report.ok, messages(report)
