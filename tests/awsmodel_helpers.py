"""The one place tests get the AWS model, real boto3 clients on it, and an executor that shares its clock."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Callable

import yaml

from stacksets.aws import Clients
from stacksets.awsmodel.adapter import CLOSED_ENDPOINT
from stacksets.awsmodel.clock import ManualClock, SimClock
from stacksets.awsmodel.model import AwsModel
from stacksets.awsmodel.scenario import Scenario
from stacksets.config import Config
from stacksets.executor import Event, Executor, Options


def scenario(text: str = "", **data: Any) -> Scenario:
    """A scenario from YAML text or keyword data, validated like a file."""
    return Scenario.model_validate({**(yaml.safe_load(text) or {}), **data})


def model_for(cfg: Config, rehearsal: Scenario | None = None, clock: Any = None) -> AwsModel:
    return AwsModel.for_config(cfg, rehearsal, clock=clock if clock is not None else ManualClock())


def clients_for(model: AwsModel, region: str, *hooks: Callable[[Any], None]) -> Clients:
    """`hooks` see every new client after the model is installed under it (see `on_the_wire`)."""

    def install(client: Any) -> None:
        model.install(client)
        for hook in hooks:
            hook(client)

    return Clients(region, endpoint_url=CLOSED_ENDPOINT, credentials=model.admin_credentials, sleep=model.clock.sleep,
                   on_client=install)


def executor_for(model: AwsModel, cfg: Config, tmp_path: Path, events: list[Event] | None = None,
                 clients: Clients | None = None, **options: Any) -> Executor:  # fmt: skip
    return Executor(clients or clients_for(model, cfg.default_region),
                    options=Options(state_path=tmp_path / "state.json", **options), clock=model.clock,
                    sleep=model.clock.sleep, on_event=events.append if events is not None else lambda event: None,
                    random=lambda: 0.5)  # fmt: skip


def copy_model(model: AwsModel) -> AwsModel:
    """An independent copy of the model's world with an empty call log, on a ManualClock at the same time: one
    rollout deployed once per module serves every test that starts from it, instead of a rollout per test. It goes
    through save and load, the way --sandbox-state keeps a rehearsal, so it copies what that keeps."""
    with tempfile.TemporaryDirectory() as directory:
        model.save(Path(directory) / "world.pickle")
        copy = AwsModel.load(Path(directory) / "world.pickle")
    copy.world.clock = ManualClock(model.clock())
    return copy


def live_stackset(model: AwsModel, name: str) -> Any:
    """The model's record of StackSet `name` (instances, operations, body), wherever it lives, or None."""
    return next((s for (_, _, n), s in model.world.stacksets.sets.items() if n == name), None)


def on_the_wire(event: str, errors: list[Exception], lost_answer: bool = False) -> Callable[[Any], None]:
    """A client hook for what the model cannot answer itself: the next calls of `event` ("cloudformation.
    DescribeStackSet") raise `errors` in turn on the wire, before the request reaches the model (a dropped
    connection), or with `lost_answer` after the model carried it out (an answer lost on its way back)."""

    def fail(**_: Any) -> None:
        if errors:
            raise errors.pop(0)

    def hook(client: Any) -> None:
        if client.meta.service_model.service_name != event.split(".")[0]:
            return
        if lost_answer:
            client.meta.events.register(f"after-call.{event}", fail)
        else:
            client.meta.events.register_first(f"before-call.{event}", fail)

    return hook


__all__ = ["SimClock", "ManualClock", "scenario", "model_for", "clients_for", "executor_for", "copy_model",
           "live_stackset", "on_the_wire"]
