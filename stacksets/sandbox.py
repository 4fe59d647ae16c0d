"""`--sandbox`: the AWS model with the config's organization, shaped by a scenario, kept between commands.

    with Sandbox(cfg, scenario_path, state_dir) as sandbox:
        Executor(sandbox.clients(), clock=sandbox.clock, sleep=sandbox.clock.sleep, ...).deploy(plan)

The rehearsal AWS shows the config's own account ids. Its state (the organization, StackSets, stacks, buckets and
the operations in flight) is written to `state_dir` when the command ends and read by the next command with the same
directory, so `deploy`, then `status`, `drift`, `destroy`, then `deploy` again run against one organization. Time is
simulated: a 40-minute operation takes no real time, and reports show simulated durations. Nothing leaves this
machine: clients point at a closed loopback port and the model answers every request before it is sent.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

from stacksets.aws import Clients
from stacksets.awsmodel.adapter import CLOSED_ENDPOINT
from stacksets.awsmodel.model import AwsModel
from stacksets.awsmodel.scenario import load_scenario
from stacksets.config import Config
from stacksets.errors import UserError

DEFAULT_STATE_DIR = Path(".rstudio-fargate/sandbox")
MODEL_FILE = "aws.pickle"
SCENARIO_FILE = "scenario.txt"


class SandboxError(UserError):
    """The rehearsal cannot start as asked (a state directory from another scenario or version); worded for the user."""


class Sandbox:
    def __init__(self, cfg: Config, scenario_path: Path | None = None, state_dir: Path | None = None) -> None:
        self.cfg = cfg
        self.scenario_path = scenario_path
        self.state_dir = state_dir
        self.model: AwsModel | None = None
        self.resumed = False

    def __enter__(self) -> Sandbox:
        scenario = load_scenario(self.scenario_path)
        scenario.check_against(self.cfg)
        saved = self.state_dir / MODEL_FILE if self.state_dir else None
        if saved is not None and saved.is_file():
            self._check_same_scenario()
            try:
                self.model = AwsModel.load(saved)
            except (pickle.UnpicklingError, AttributeError, ImportError, EOFError, TypeError) as error:
                raise SandboxError(f"{saved}: cannot read the rehearsal kept there ({type(error).__name__}: {error}); "
                                   f"it was written by another version: delete {self.state_dir} to start "
                                   "over") from None  # fmt: skip
            self.resumed = True
        else:
            self.model = AwsModel.for_config(self.cfg, scenario)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.state_dir is not None and self.model is not None:
            self.model.save(self.state_dir / MODEL_FILE)
            (self.state_dir / SCENARIO_FILE).write_text(self._scenario_key(), encoding="utf-8")

    def _scenario_key(self) -> str:
        return str(self.scenario_path.resolve()) if self.scenario_path else "(default scenario)"

    def _check_same_scenario(self) -> None:
        assert self.state_dir is not None
        recorded = self.state_dir / SCENARIO_FILE
        before = recorded.read_text(encoding="utf-8") if recorded.is_file() else "(default scenario)"
        if before != self._scenario_key():
            raise SandboxError(f"{self.state_dir} holds a rehearsal of {before}, not of {self._scenario_key()}: pass "
                               f"another --sandbox-state, or delete {self.state_dir} to start over")  # fmt: skip

    @property
    def clock(self) -> Any:
        assert self.model is not None
        return self.model.clock

    def clients(self) -> Clients:
        assert self.model is not None
        return Clients(self.cfg.default_region, endpoint_url=CLOSED_ENDPOINT, credentials=self.model.admin_credentials,
                       on_client=self.model.install, sleep=self.model.clock.sleep)  # fmt: skip

    @property
    def operations_file(self) -> Path | None:
        """Where the executor records operations in flight, next to the rehearsal they run in."""
        return self.state_dir / "operations.json" if self.state_dir else None
