"""The image step: which pinned tags the central ECR lacks, building them (CodeBuild or a local docker), adopting
builds an interrupted run left running, and checking that every built tag really arrived."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Iterable

from botocore.exceptions import ClientError

from stacksets import naming
from stacksets.actions.context import Context, Steps
from stacksets.aws import AwsError, explain
from stacksets.builders import BuildStatus
from stacksets.calls import CredentialsError, call, error_code
from stacksets.operations import backoff
from stacksets.plan import ImageBuild, ImageStep
from stacksets.results import ImageDiff, ImageOutcome, InstanceFailure, NodeFailed, State, StatusRow
from stacksets.run import Run

Outcomes = tuple[dict[str, ImageOutcome], list[str], list[InstanceFailure]]


class CentralAccount:
    """The central account through the publisher role, every call counted and retried like any other."""

    def __init__(self, run: Run, step: ImageStep) -> None:
        self.run = run
        self.account, self.region, self.bucket = step.account, step.region, step.bucket

    def call(self, service: str, api: str, **kwargs: Any) -> Any:
        return call(self.run, self.run.clients.publisher(self.account, self.region, service), api, **kwargs)

    def record_write(self, what: str) -> None:
        """A write that is not an AWS API call (`docker push`), counted with them."""
        self.run.count(what, mutating=True)


class ImageStepActions:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.run = ctx.run

    def diff(self, step: ImageStep) -> ImageDiff:
        missing, notes, unreadable = self._look_into_ecr(step)
        absent = {build.image for build in missing}
        warnings = [f"{image}: {note}" for image, note in notes.items()]
        if unreadable:
            warnings.append(f"cannot look into ECR yet, so every image counts as missing: {unreadable}")
        return ImageDiff(step.name, tuple((b.image, b.tag) for b in step.images if b.image not in absent),
                         tuple((b.image, b.tag) for b in missing), tuple(warnings))  # fmt: skip

    def status(self, step: ImageStep) -> list[StatusRow]:
        missing, notes, unreadable = self._look_into_ecr(step)
        absent = {build.image for build in missing}
        status = {b.image: "UNKNOWN" if unreadable else "MISSING" if b.image in absent else "PRESENT"
                  for b in step.images}  # fmt: skip
        return [StatusRow(step.name, step.account, step.region, status[b.image], b.image,
                          reason="; ".join(filter(None, (b.tag, notes.get(b.image), unreadable))))
                for b in step.images]  # fmt: skip

    def deploy(self, step: ImageStep) -> Steps[State]:
        result = self.run.report.results[step.name]
        missing, _ = self._missing_images(step, step.images, strict=True)
        absent = {build.image for build in missing}
        result.images = [ImageOutcome(b.image, b.tag, "present") for b in step.images if b.image not in absent]
        if not missing:
            result.message = "images up to date: " + ", ".join(f"{b.image} {b.tag}" for b in step.images)
            return State.UNCHANGED
        outcomes, problems, failures = yield from self._build(step, missing)
        built = [build for build in missing if outcomes[build.image].outcome != "failed"]
        for build in self._missing_images(step, built, strict=True)[0]:
            outcomes[build.image] = replace(outcomes[build.image], outcome="failed")
            problems.append(f"{build.image} {build.tag}: its build {outcomes[build.image].build_id} succeeded, but "
                            f"ECR has no {build.image}:{build.tag}")  # fmt: skip
        result.images += [outcomes[build.image] for build in missing]
        if problems:
            raise NodeFailed("; ".join(problems), failures)
        builder = self.ctx.builder
        result.message = f"{builder.outcome} {', '.join(build.image for build in missing)}"
        if builder.outcome == "simulated":
            result.message += " (sandbox: tags put into ECR, nothing was built)"
        return State.SUCCEEDED

    def _look_into_ecr(self, step: ImageStep) -> tuple[list[ImageBuild], dict[str, str], str]:
        """For plan and status, where a deploy would stop with an error: the missing builds, a note per image, and
        why ECR could not be read at all ("" when it could)."""
        try:
            return (*self._missing_images(step, step.images, strict=False), "")
        except CredentialsError:
            raise
        except (AwsError, ClientError) as error:
            # Before rstudio-central exists there is no publisher role to look through.
            return list(step.images), {}, str(explain(error) if isinstance(error, ClientError) else error)

    def _missing_images(self, step: ImageStep, builds: Iterable[ImageBuild], strict: bool
                        ) -> tuple[list[ImageBuild], dict[str, str]]:  # fmt: skip
        """The builds whose tag is not in ECR, and a note per image whose repository is not there either."""
        central = CentralAccount(self.run, step)
        missing: list[ImageBuild] = []
        notes: dict[str, str] = {}
        for build in builds:
            try:
                central.call("ecr", "describe_images", repositoryName=build.image, imageIds=[{"imageTag": build.tag}])
            except ClientError as error:
                code = error_code(error)
                if code == "RepositoryNotFoundException" and strict:
                    raise NodeFailed(f"ECR repository {build.image} does not exist in {step.account}/{step.region}: "
                                     f"deploy {naming.CENTRAL} first") from None  # fmt: skip
                if code not in ("ImageNotFoundException", "RepositoryNotFoundException"):
                    raise
                missing.append(build)
                if code == "RepositoryNotFoundException":
                    notes[build.image] = f"no ECR repository {build.image} yet ({naming.CENTRAL} creates it)"
        return missing, notes

    def _build(self, step: ImageStep, builds: list[ImageBuild]) -> Steps[Outcomes]:
        """Start every build, then poll them together until all have ended (CodeBuild runs them in parallel)."""
        central = CentralAccount(self.run, step)
        outcomes: dict[str, ImageOutcome] = {}
        problems: list[str] = []
        failures: list[InstanceFailure] = []
        pending: dict[str, tuple[ImageBuild, float]] = {}
        deadline, delays = self.ctx.operations.deadline(), backoff(self.run)  # one limit for the builds together
        for build in builds:
            start = self.run.clock()
            build_id = self._adopt(step, build, central) or self._start(step, build, central, outcomes, problems)
            if build_id:
                pending[build_id] = (build, start)
        while pending:
            statuses = self.ctx.builder.poll(list(pending), central)
            for build_id in list(pending):
                status = statuses.get(build_id) or BuildStatus(True, reason=f"the builder does not know {build_id}")
                if status.done:
                    self._ended(step, build_id, pending.pop(build_id), status, outcomes, problems, failures)
            if not pending:
                break
            images = ", ".join(build.image for build, _ in pending.values())
            deadline.check(f"image build(s) {', '.join(pending)}", f"{images} still building")
            self.run.emit(step.name, State.RUNNING, "wait for builds", f"building {images}")
            yield deadline.park(next(delays))
        return outcomes, problems, failures

    def _start(self, step: ImageStep, build: ImageBuild, central: CentralAccount, outcomes: dict[str, ImageOutcome],
               problems: list[str]) -> str:  # fmt: skip
        """The id of a newly started build ("" when it did not start: outcome and problem recorded)."""
        self.run.emit(step.name, State.RUNNING, "start build", f"{build.image} {build.tag}")
        try:
            build_id = self.ctx.builder.start(build, central)
        except ClientError as error:
            outcomes[build.image] = ImageOutcome(build.image, build.tag, "failed")
            problems.append(f"{build.image} {build.tag}: its build did not start: {explain(error)}")
            return ""
        self.ctx.state.record(_build_key(step, build), build_id, "start_build")
        return build_id

    def _ended(self, step: ImageStep, build_id: str, started: tuple[ImageBuild, float], status: BuildStatus,
               outcomes: dict[str, ImageOutcome], problems: list[str],
               failures: list[InstanceFailure]) -> None:  # fmt: skip
        build, start = started
        self.ctx.state.clear(_build_key(step, build), build_id)
        outcome = self.ctx.builder.outcome if status.succeeded else "failed"
        outcomes[build.image] = ImageOutcome(build.image, build.tag, outcome, self.run.clock() - start, build_id)
        self.run.timeline(step.name, f"build {build.image}", start, status.succeeded)
        self.run.emit(step.name, State.RUNNING, "wait for builds", f"{build.image} {build.tag} {outcome}")
        if not status.succeeded:
            problems.append(_build_problem(build, build_id, status))
            if status.log:
                failures.append(InstanceFailure(step.account, step.region, f"last lines of the log of {build_id}",
                                                status.log))  # fmt: skip

    def _adopt(self, step: ImageStep, build: ImageBuild, central: CentralAccount) -> str | None:
        """A build of this very tag that an interrupted run started and that is still running: wait for it instead
        of starting a second one that would race it to the immutable tag."""
        key = _build_key(step, build)
        recorded = self.ctx.state.pending(key)
        if not recorded:
            return None
        build_id = recorded["operation_id"]
        try:
            status = self.ctx.builder.poll([build_id], central).get(build_id)
        except ClientError:
            status = None
        if status is None or status.done:
            self.ctx.state.clear(key)
            return None
        self.run.emit(step.name, State.RUNNING, "wait for builds", f"reattached to {build_id}")
        return build_id


def _build_key(step: ImageStep, build: ImageBuild) -> str:
    return f"{step.name}/{build.image}:{build.tag}"


def _build_problem(build: ImageBuild, build_id: str, status: BuildStatus) -> str:
    where = f" in phase {status.phase}" if status.phase else ""
    log = f" (log: {status.link})" if status.link else ""
    return f"{build.image} {build.tag}: build {build_id} failed{where}: {status.reason or 'no reason given'}{log}"
