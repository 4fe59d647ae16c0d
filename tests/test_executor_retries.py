"""The executor's retry loop is the only one: botocore makes one attempt, and transient errors (throttling, 5xx,
dropped connections) are retried with full-jitter backoff until 600 s of backoff were spent on the call.

Errors come from the AWS model under real boto3 clients (`fail_next`), dropped connections from a hook on the wire
in front of it, so every error is the exception botocore itself raises."""

from __future__ import annotations

from pathlib import Path

import pytest
from botocore.exceptions import EndpointConnectionError, ReadTimeoutError

from stacksets.aws import Clients
from stacksets.awsmodel.model import AwsModel
from stacksets.config import Config
from stacksets.plan import Plan, build_plan
from stacksets.results import State
from tests.awsmodel_helpers import clients_for, executor_for, model_for, on_the_wire, scenario
from tests.conftest import TEMPLATES

ENDPOINT = "https://cloudformation.eu-west-1.amazonaws.com/"


@pytest.fixture(scope="module")
def plan(cfg: Config) -> Plan:
    return build_plan(cfg, TEMPLATES).only(["rstudio-bootstrap"])


@pytest.fixture
def model(cfg: Config) -> AwsModel:
    # the bootstrap's operation ends within seconds, so it has ended by the first poll that gets through; request
    # rates high enough that the model's own throttling adds no sleeps to the ones counted here
    return model_for(cfg, scenario(durations={"default": 1}, limits={"api_burst": 10_000}))


def test_botocore_makes_exactly_one_attempt() -> None:
    assert Clients("eu-west-1")._config().retries == {"total_max_attempts": 1, "mode": "standard"}
    assert Clients("eu-west-1", endpoint_url="http://localhost:5000")._config().retries["total_max_attempts"] == 1


def test_a_burst_of_twenty_throttles_is_ridden_out(model: AwsModel, cfg: Config, plan: Plan, tmp_path: Path) -> None:
    model.fail_next("describe_stack_set_operation", "Throttling", times=20)
    report = executor_for(model, cfg, tmp_path).deploy(plan)

    assert report.ok, report.results["rstudio-bootstrap"].message
    # every attempt is counted: 20 throttled, then the one that says SUCCEEDED
    assert report.calls_by_stackset["rstudio-bootstrap"]["describe_stack_set_operation"] == 20 + 1
    assert model.calls["describe_stack_set_operation"] == 20 + 1


def test_throttling_that_never_stops_fails_that_stackset_after_the_budget(model: AwsModel, cfg: Config, plan: Plan,
                                                                          tmp_path: Path) -> None:  # fmt: skip
    model.fail_next("describe_stack_set_operation", "Throttling", times=10**6)
    report = executor_for(model, cfg, tmp_path).deploy(plan)

    bootstrap = report.results["rstudio-bootstrap"]
    assert bootstrap.state is State.FAILED
    assert bootstrap.message.startswith("describe_stack_set_operation was throttled on all ")
    assert model.clock() == pytest.approx(600)
    assert max(model.clock.sleeps) == 10  # full jitter under the 20 s cap (random fixed at 0.5)


@pytest.mark.parametrize("error", ["ServiceUnavailable", "InternalFailure"], ids=["503", "500"])
def test_server_errors_are_retried(model: AwsModel, cfg: Config, plan: Plan, tmp_path: Path, error: str) -> None:
    model.fail_next("describe_stack_set", error, times=3)
    report = executor_for(model, cfg, tmp_path).deploy(plan)

    assert report.ok, report.results["rstudio-bootstrap"].message
    assert report.calls_by_stackset["rstudio-bootstrap"]["describe_stack_set"] == 2 + 3  # a deploy reads it twice
    assert model.clock.sleeps[:3] == [0.5, 1.0, 2.0]


@pytest.mark.parametrize("error", [EndpointConnectionError, ReadTimeoutError], ids=["no connection", "read timeout"])
def test_dropped_connections_are_retried(model: AwsModel, cfg: Config, plan: Plan, tmp_path: Path,
                                         error: type[Exception]) -> None:  # fmt: skip
    dropped = on_the_wire("cloudformation.DescribeStackSet", [error(endpoint_url=ENDPOINT) for _ in range(3)])
    clients = clients_for(model, cfg.default_region, dropped)
    report = executor_for(model, cfg, tmp_path, clients=clients).deploy(plan)

    assert report.ok, report.results["rstudio-bootstrap"].message
    assert report.calls_by_stackset["rstudio-bootstrap"]["describe_stack_set"] == 2 + 3
    assert model.calls["describe_stack_set"] == 2  # the dropped attempts never reached AWS
    assert model.clock.sleeps[:3] == [0.5, 1.0, 2.0]


def test_a_refused_call_is_not_retried(model: AwsModel, cfg: Config, plan: Plan, tmp_path: Path) -> None:
    model.fail_next("create_stack_set", "AccessDenied")
    report = executor_for(model, cfg, tmp_path).deploy(plan)

    assert report.results["rstudio-bootstrap"].state is State.FAILED
    assert "AccessDenied" in report.results["rstudio-bootstrap"].message
    assert report.calls_by_stackset["rstudio-bootstrap"]["create_stack_set"] == 1
    assert model.clock.sleeps == []


def test_a_throttled_assume_role_is_retried(cfg) -> None:
    """A rollout assumes the reader role in every target account within seconds; botocore makes one attempt, and
    this call is outside the executor's retry layer, so Clients retries it itself."""
    from tests.awsmodel_helpers import clients_for, model_for

    model = model_for(cfg)
    clients = clients_for(model, cfg.default_region)
    model.fail_next("assume_role", "Throttling", times=3)
    with pytest.raises(Exception, match="cannot assume"):
        clients.reader("555555555555", cfg.default_region)  # throttled three times, then no such role yet
    assert model.calls["assume_role"] == 4 and model.clock() == pytest.approx(0.5 + 1 + 2)
