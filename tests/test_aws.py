"""stacksets.aws against moto: clients in other accounts through an assumed role outlive the role session."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from moto import mock_aws

from stacksets.aws import AwsError, Clients

REGION = "eu-west-1"
CENTRAL = "222222222222"


@pytest.fixture
def clients(monkeypatch):
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        yield Clients(REGION)


def test_the_assumed_role_is_assumed_again_before_its_session_expires(clients, monkeypatch):
    sts = clients.client("sts")
    calls = []
    original = sts.assume_role
    monkeypatch.setattr(sts, "assume_role", lambda **kwargs: calls.append(kwargs) or original(**kwargs))

    ecr = clients.publisher(CENTRAL, REGION, "ecr")
    assert ecr.describe_repositories()["repositories"] == []
    assert [call["RoleArn"] for call in calls] == [f"arn:aws:iam::{CENTRAL}:role/rstudio-image-publisher"]

    credentials = ecr._request_signer._credentials
    credentials._expiry_time = datetime.now(timezone.utc) + timedelta(seconds=30)  # an hour later, as it were
    ecr.describe_repositories()
    assert len(calls) == 2
    assert clients.publisher(CENTRAL, REGION, "ecr") is ecr  # cached: one client per role, account, region, service


def test_a_role_that_cannot_be_assumed_is_worded_for_the_user(clients, monkeypatch):
    def refuse(**kwargs):
        raise RuntimeError("AccessDenied")

    monkeypatch.setattr(clients.client("sts"), "assume_role", refuse)
    with pytest.raises(AwsError, match="cannot assume arn:aws:iam::222222222222:role/rstudio-deploy-reader.*"
                                       "rstudio-bootstrap"):  # fmt: skip
        clients.reader(CENTRAL, REGION)
