"""The one place tests get the AWS model, real boto3 clients on it, and an executor that shares its clock."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from stacksets.aws import Clients
from stacksets.awsmodel.model import AwsModel
from stacksets.awsmodel.adapter import CLOSED_ENDPOINT
from stacksets.awsmodel.clock import ManualClock, SimClock
from stacksets.awsmodel.scenario import Scenario
from stacksets.config import Config
from stacksets.executor import Event, Executor, Options


def scenario(text: str = "", **data: Any) -> Scenario:
    """A scenario from YAML text or keyword data, validated like a file."""
    return Scenario.model_validate({**(yaml.safe_load(text) or {}), **data})


def model_for(cfg: Config, rehearsal: Scenario | None = None, clock: Any = None) -> AwsModel:
    return AwsModel.for_config(cfg, rehearsal, clock=clock if clock is not None else ManualClock())


def clients_for(model: AwsModel, region: str) -> Clients:
    return Clients(region, endpoint_url=CLOSED_ENDPOINT, credentials=model.admin_credentials, on_client=model.install)


def executor_for(model: AwsModel, cfg: Config, tmp_path: Path, events: list[Event] | None = None,
                 **options: Any) -> Executor:  # fmt: skip
    return Executor(clients_for(model, cfg.default_region),
                    options=Options(state_path=tmp_path / "state.json", **options), clock=model.clock,
                    sleep=model.clock.sleep, on_event=events.append if events is not None else lambda event: None,
                    random=lambda: 0.5)  # fmt: skip


__all__ = ["SimClock", "ManualClock", "scenario", "model_for", "clients_for", "executor_for"]
