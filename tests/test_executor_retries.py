"""The executor's retry loop is the only one: botocore makes one attempt, and transient errors (throttling, 5xx,
dropped connections) are retried with full-jitter backoff until 600 s of backoff were spent on the call."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError, ReadTimeoutError

from stacksets.aws import Clients
from stacksets.config import Config
from stacksets.plan import Plan, build_plan
from stacksets.results import State
from tests.conftest import TEMPLATES
from tests.fake_aws import FakeAws, FakeClock, client_error
from tests.test_executor import ORGANIZATION, executor


@pytest.fixture
def plan(cfg: Config) -> Plan:
    return build_plan(cfg, TEMPLATES).only(["rstudio-bootstrap"])


@pytest.fixture
def fake() -> FakeAws:
    fake = FakeAws(FakeClock(), organization=ORGANIZATION)
    fake.polls = 1
    return fake


def failing(fake: FakeAws, api: str, errors: list[Exception]) -> None:
    """`api` raises these errors in turn, then answers normally."""
    original = getattr(fake, api)

    def answer(**kwargs: Any) -> Any:
        if errors:
            raise errors.pop(0)
        return original(**kwargs)

    setattr(fake, api, answer)


def test_botocore_makes_exactly_one_attempt() -> None:
    assert Clients("eu-west-1")._config().retries == {"total_max_attempts": 1, "mode": "standard"}
    assert Clients("eu-west-1", endpoint_url="http://localhost:5000")._config().retries["total_max_attempts"] == 1


def test_a_burst_of_twenty_throttles_is_ridden_out(fake: FakeAws, plan: Plan, tmp_path: Path) -> None:
    fake.throttle["describe_stack_set_operation"] = 20
    report = executor(fake, tmp_path).deploy(plan)

    assert report.ok, report.results["rstudio-bootstrap"].message
    # every attempt is counted: 20 throttled, then the one that says SUCCEEDED
    assert report.calls_by_stackset["rstudio-bootstrap"]["describe_stack_set_operation"] == 20 + 1


def test_throttling_that_never_stops_fails_that_stackset_after_the_budget(fake: FakeAws, plan: Plan,
                                                                          tmp_path: Path) -> None:  # fmt: skip
    fake.throttle["describe_stack_set_operation"] = 10**6
    report = executor(fake, tmp_path).deploy(plan)

    bootstrap = report.results["rstudio-bootstrap"]
    assert bootstrap.state is State.FAILED
    assert bootstrap.message.startswith("describe_stack_set_operation was throttled on all ")
    assert fake.clock.now == pytest.approx(600)
    assert max(fake.clock.sleeps) == 10  # full jitter under the 20 s cap (random fixed at 0.5)


@pytest.mark.parametrize("error", [
    client_error("ServiceUnavailable", "Service Unavailable", status=503),
    client_error("InternalFailure", "We encountered an internal error", status=500),
    EndpointConnectionError(endpoint_url="https://cloudformation.eu-west-1.amazonaws.com/"),
    ReadTimeoutError(endpoint_url="https://cloudformation.eu-west-1.amazonaws.com/"),
], ids=["503", "500", "no connection", "read timeout"])  # fmt: skip
def test_server_errors_and_dropped_connections_are_retried(fake: FakeAws, plan: Plan, tmp_path: Path,
                                                           error: Exception) -> None:  # fmt: skip
    failing(fake, "describe_stack_set", [error, error, error])
    report = executor(fake, tmp_path).deploy(plan)

    assert report.ok, report.results["rstudio-bootstrap"].message
    assert report.calls_by_stackset["rstudio-bootstrap"]["describe_stack_set"] == 2 + 3  # a deploy reads it twice
    assert fake.clock.sleeps[:3] == [0.5, 1.0, 2.0]


def test_a_refused_call_is_not_retried(fake: FakeAws, plan: Plan, tmp_path: Path) -> None:
    failing(fake, "create_stack_set", [client_error("AccessDeniedException", "not allowed")])
    report = executor(fake, tmp_path).deploy(plan)

    assert report.results["rstudio-bootstrap"].state is State.FAILED
    assert "AccessDeniedException" in report.results["rstudio-bootstrap"].message
    assert report.calls_by_stackset["rstudio-bootstrap"]["create_stack_set"] == 1
    assert fake.clock.sleeps == []
