"""How a missing image gets into the central account's ECR: CodeBuild (the default), a local `docker` (`deploy.py images
--local`) or, in the sandbox, a simulation.

The executor decides what is missing, polls, keeps the deadline and reports; a builder only starts the build of one
image and says how the builds it started are doing. Every AWS call goes through the `Central` the executor hands in
(the publisher role, each call counted and retried there), so no builder makes a client of its own.
"""

from __future__ import annotations

import base64
import io
import shutil
import subprocess
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Protocol
from urllib.parse import urlparse

from botocore.exceptions import ClientError

from stacksets import naming
from stacksets.errors import UserError
from stacksets.plan import ImageBuild

# The task definitions run X86_64 (generator/instance/*.py): a laptop on ARM must not build for itself.
PLATFORM = "linux/amd64"
LOG_LINES = 20
FAILED_PHASE_STATES = {"FAILED", "FAULT", "TIMED_OUT", "STOPPED", "CLIENT_ERROR"}


class BuilderError(UserError):
    """A builder cannot work here at all (no docker on PATH); worded for the user."""


@dataclass(frozen=True)
class BuildStatus:
    done: bool
    succeeded: bool = False
    phase: str = ""  # the phase that failed
    reason: str = ""  # what it said
    link: str = ""  # where its log is
    log: tuple[str, ...] = ()  # the last lines of that log


class Central(Protocol):
    """The central account as the publisher role sees it."""

    account: str
    region: str
    bucket: str

    def call(self, service: str, api: str, **kwargs: Any) -> Any: ...

    def record_write(self, what: str) -> None: ...


class Builder(Protocol):
    outcome: str  # what the report calls a finished build: "built" or "simulated"

    def start(self, build: ImageBuild, central: Central) -> str:
        """Start building one image; returns the id `poll` knows it by."""
        ...

    def poll(self, build_ids: list[str], central: Central) -> dict[str, BuildStatus]:
        """The status of those of `build_ids` this builder knows."""
        ...


def upload_context(build: ImageBuild, central: Central) -> None:
    """The build context where the CodeBuild project looks for it (the buildspec checks it against the tag)."""
    central.call("s3", "put_object", Bucket=central.bucket, Key=build.key, Body=build.archive(),
                 ContentType="application/zip")  # fmt: skip


class CodeBuild:
    """The central account's CodeBuild project: one build per image, all running at once."""

    outcome = "built"

    def __init__(self, project: str = naming.IMAGE_BUILD_PROJECT) -> None:
        self.project = project

    def start(self, build: ImageBuild, central: Central) -> str:
        upload_context(build, central)
        variables = [{"name": "IMAGE_NAME", "value": build.image, "type": "PLAINTEXT"},
                     {"name": "IMAGE_TAG", "value": build.tag, "type": "PLAINTEXT"}]  # fmt: skip
        answer = central.call("codebuild", "start_build", projectName=self.project,
                              environmentVariablesOverride=variables)  # fmt: skip
        return answer["build"]["id"]

    def poll(self, build_ids: list[str], central: Central) -> dict[str, BuildStatus]:
        builds = central.call("codebuild", "batch_get_builds", ids=build_ids).get("builds", [])
        return {build["id"]: self._status(build, central) for build in builds}

    def _status(self, build: dict[str, Any], central: Central) -> BuildStatus:
        status = build.get("buildStatus", "IN_PROGRESS")
        logs = build.get("logs") or {}
        link = logs.get("deepLink", "")
        if status == "IN_PROGRESS":
            return BuildStatus(False, link=link)
        if status == "SUCCEEDED":
            return BuildStatus(True, True, link=link)
        phases = build.get("phases") or []
        failed = next((p for p in phases if p.get("phaseStatus") in FAILED_PHASE_STATES), None)
        phase = failed.get("phaseType", "") if failed else build.get("currentPhase", "")
        contexts = (failed or {}).get("contexts") or []
        reason = "; ".join(c.get("message", "") for c in contexts if c.get("message")) or status
        return BuildStatus(True, False, phase=phase, reason=reason, link=link, log=self._log_tail(logs, central))

    @staticmethod
    def _log_tail(logs: dict[str, Any], central: Central) -> tuple[str, ...]:
        if not logs.get("groupName") or not logs.get("streamName"):
            return ()
        try:
            events = central.call("logs", "get_log_events", logGroupName=logs["groupName"],
                                  logStreamName=logs["streamName"], limit=LOG_LINES,
                                  startFromHead=False).get("events", [])  # fmt: skip
        except ClientError as error:
            return (f"(log unavailable: {error})",)
        return tuple(line for event in events for line in [event.get("message", "").rstrip()] if line)


class _DockerFailed(Exception):
    def __init__(self, phase: str, reason: str, log: tuple[str, ...] = ()) -> None:
        super().__init__(reason)
        self.phase, self.reason, self.log = phase, reason, log


def unpack(archive: bytes, target: Path) -> None:
    """Unzip a build context with the file modes it carries (zipfile's extractall drops them)."""
    with zipfile.ZipFile(io.BytesIO(archive)) as zipped:
        for entry in zipped.infolist():
            relative = PurePosixPath(entry.filename)
            if relative.is_absolute() or ".." in relative.parts:
                raise ValueError(f"unsafe path {entry.filename} in a build context")
            path = target.joinpath(*relative.parts)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(zipped.read(entry))
            path.chmod((entry.external_attr >> 16) & 0o777 or 0o644)


class LocalDocker:
    """`docker build` and `docker push` on this machine, logged in to the central ECR with the publisher role.

    For when CodeBuild is not an option (no Docker Hub account yet, debugging a Dockerfile). The build runs on the
    unzipped archive, so it sees exactly what CodeBuild would. Builds run one after another, inside `start`.
    """

    outcome = "built"

    def __init__(self, docker: str | None = None) -> None:
        found = docker or shutil.which("docker")
        if not found:
            raise BuilderError("`docker` is not on PATH: install Docker (or start Docker Desktop), or leave out "
                               "--local to build in the central account's CodeBuild project")  # fmt: skip
        self.docker = found
        self._registry: str | None = None
        self._password = ""
        self._statuses: dict[str, BuildStatus] = {}

    def start(self, build: ImageBuild, central: Central) -> str:
        build_id = f"local:{build.image}:{build.tag}"
        try:
            self._build(build, central)
            self._statuses[build_id] = BuildStatus(True, True)
        except _DockerFailed as failure:
            self._statuses[build_id] = BuildStatus(True, False, phase=failure.phase, reason=failure.reason,
                                                   log=failure.log)  # fmt: skip
        return build_id

    def poll(self, build_ids: list[str], central: Central) -> dict[str, BuildStatus]:
        return {build_id: self._statuses[build_id] for build_id in build_ids if build_id in self._statuses}

    def _build(self, build: ImageBuild, central: Central) -> None:
        reference = f"{self._login(central)}/{build.image}:{build.tag}"
        with tempfile.TemporaryDirectory(prefix=f"rstudio-{build.image}-") as context:
            unpack(build.archive(), Path(context))
            self._docker("docker build", "build", "--pull", "--platform", PLATFORM, "--tag", reference, context)
        central.record_write("docker push")
        self._docker("docker push", "push", reference)

    def _login(self, central: Central) -> str:
        """Once per run: ECR's token is good for 12 hours, and `docker login` keeps it."""
        if self._registry is None:
            data = central.call("ecr", "get_authorization_token")["authorizationData"][0]
            user, _, password = base64.b64decode(data["authorizationToken"]).decode("utf-8").partition(":")
            endpoint = data["proxyEndpoint"]
            registry = urlparse(endpoint).netloc or endpoint
            self._password = password
            # On stdin: an argument would be visible to every user of this machine in the process list.
            self._docker("docker login", "login", "--username", user, "--password-stdin", registry, stdin=password)
            self._registry = registry
        return self._registry

    def _docker(self, phase: str, *argv: str, stdin: str | None = None) -> None:
        try:
            done = subprocess.run([self.docker, *argv], input=stdin, capture_output=True, text=True, check=False)
        except OSError as error:
            raise _DockerFailed(phase, f"cannot run {self.docker}: {error}") from None
        if done.returncode != 0:
            output = self._redact(f"{done.stdout or ''}{done.stderr or ''}")
            log = tuple(line for line in output.splitlines() if line.strip())[-LOG_LINES:]
            raise _DockerFailed(phase, f"exit status {done.returncode}", log)

    def _redact(self, text: str) -> str:
        return text.replace(self._password, "****") if self._password else text
