"""Runs a Plan against AWS: diff, deploy, status, drift and destroy of the StackSets, and the image step.

The executor never prints or exits: it returns data (NodeDiff, Report, StatusRow) and reports progress through the
`on_event` callback. Time (`clock`, `sleep`) and randomness (`random`) are injected so tests and the benchmark run on a
simulated clock. This module is a façade: each public call builds a fresh `Run` and hands each step of the plan to
its action in `stacksets.actions`, with the readiness-driven walk (`stacksets.walk`) deciding when.

Writes are idempotent across runs: each operation gets a client-supplied OperationId that is written to the state
file before the call, so a run that was interrupted reattaches to the operation in flight instead of starting another.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from random import random as default_random
from typing import Any, Callable, TypeVar

from botocore.exceptions import ClientError

from stacksets import naming
from stacksets.actions.context import Context, Steps
from stacksets.actions.deploy import deploy_stackset
from stacksets.actions.destroy import destroy_stackset
from stacksets.actions.diff import diff_stackset
from stacksets.actions.drift import detect_drift
from stacksets.actions.images import CentralAccount, ImageStepActions
from stacksets.actions.status import stackset_status
from stacksets.aws import AwsError, call_as_value, explain
from stacksets.builders import Builder, CodeBuild
from stacksets.calls import MUTATING, CredentialsError, pages
from stacksets.plan import ImageStep, Plan, Step
from stacksets.results import (
    Diff,
    DriftedInstance,
    Event,
    ImageDiff,
    ImageOutcome,
    InstanceFailure,
    NodeDiff,
    NodeFailed,
    NodeResult,
    Report,
    State,
    StatusRow,
    TimelineEntry,
)
from stacksets.retire import Retired, classify, retired_plan
from stacksets.run import Options, Run, working_on
from stacksets.state import StateFile
from stacksets.template_checks import retained_resources
from stacksets.walk import Verdict, walk

T = TypeVar("T")
__all__ = ["MUTATING", "CentralAccount", "CredentialsError", "Diff", "DriftedInstance", "Event", "Executor",
           "ImageDiff", "ImageOutcome", "InstanceFailure", "NodeDiff", "NodeFailed", "NodeResult", "Options",
           "Report", "State", "StatusRow", "TimelineEntry", "retained_resources"]  # fmt: skip


class Executor:
    """Diff, deploy, status, drift and destroy of a Plan; one instance may serve several of these calls in turn."""

    def __init__(self, clients: Any, *, options: Options | None = None, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep, on_event: Callable[[Event], None] = lambda event: None,
                 random: Callable[[], float] = default_random, builder: Builder | None = None) -> None:  # fmt: skip
        self.clients = clients
        self.builder: Builder = builder or CodeBuild()
        self.options = options or Options()
        self.clock = clock
        self.sleep = sleep
        self.on_event = on_event
        self.random = random
        self.state = StateFile(self.options.state_path)

    def diff(self, plan: Plan) -> list[Diff]:
        """What a deploy would change, in plan order; outputs not deployed yet read "(from …)"."""
        ctx = self._context(plan)

        def one(step: Step) -> Diff:
            if isinstance(step, ImageStep):
                return ImageStepActions(ctx).diff(step)
            return diff_stackset(ctx, step, strict=False)

        return self._each(plan, one)

    def deploy(self, plan: Plan) -> Report:
        """Deploy every step once its dependencies have succeeded; the report says what each step did."""
        ctx = self._context(plan)

        def work(step: Step) -> Steps[State]:
            if isinstance(step, ImageStep):
                return ImageStepActions(ctx).deploy(step)
            return deploy_stackset(ctx, step, plan)

        return walk(ctx.run, plan, work, "deploy", judge)

    def status(self, plan: Plan) -> list[StatusRow]:
        """One row per StackSet and per instance (per image for the image step), in plan order."""
        ctx = self._context(plan)

        def one(step: Step) -> list[StatusRow]:
            return ImageStepActions(ctx).status(step) if isinstance(step, ImageStep) else stackset_status(ctx, step)

        return [row for rows in self._each(plan, one) for row in rows]

    def drift(self, plan: Plan) -> Report:
        """Detect drift on every StackSet; drifted instances list their drifted resources."""
        plan = plan.without_images()  # images are not deployed by CloudFormation: nothing can drift
        ctx = self._context(plan)
        return walk(ctx.run, plan, lambda node: detect_drift(ctx, node), "drift detection", judge)

    def destroy(self, plan: Plan) -> Report:
        """Delete instances, then StackSets, dependents first; resources with DeletionPolicy Retain are listed."""
        reverse = plan.reversed()  # without the image step: the images stay in the retained repositories
        ctx = self._context(reverse)
        return walk(ctx.run, reverse, lambda node: destroy_stackset(ctx, node), "destroy", judge)

    def retired(self, plan: Plan) -> Retired:
        """The StackSets of instances the config no longer has; `plan` must be the whole plan, not an --only."""
        ctx = self._context(plan)
        cfn = ctx.run.clients.client("cloudformation")
        found = pages(ctx.run, cfn, "list_stack_sets", "Summaries", Status="ACTIVE",
                      **call_as_value(plan.nodes[naming.BOOTSTRAP].call_as))  # fmt: skip
        return classify([summary["StackSetName"] for summary in found], plan)

    def prune(self, plan: Plan, names: tuple[str, ...]) -> Report:
        """Delete retired compute StackSets (from retired()), dependents first, with the templates they run now."""
        ctx = self._context(plan)
        base = plan.nodes[naming.BOOTSTRAP]
        bodies = {}
        for name in names:
            live = ctx.api(replace(base, name=name)).describe()
            if live is not None:
                bodies[name] = live.get("TemplateBody", "")
        return self.destroy(retired_plan(plan, bodies))

    def _each(self, plan: Plan, read: Callable[[Step], T]) -> list[T]:
        """`read` of every step, in plan order. The steps are independent reads, so they run side by side on the
        pool: a plan of 1,500 StackSets is a few seconds of API calls, not half an hour of them one after another."""
        steps = plan.steps()

        def attributed(name: str) -> T:
            with working_on(name):
                return read(steps[name])

        with ThreadPoolExecutor(max_workers=max(1, self.options.max_workers)) as pool:
            return list(pool.map(attributed, plan.order()))

    def _context(self, plan: Plan) -> Context:
        run = Run(self.clients, self.options, clock=self.clock, sleep=self.sleep, random=self.random,
                  on_event=self.on_event, total=len(plan.steps()))  # fmt: skip
        return Context.create(run, self.state, self.builder)


def judge(error: Exception) -> Verdict:
    """How a step's exception reads in its result; expired credentials stop the whole run."""
    if isinstance(error, NodeFailed):
        return Verdict(str(error), error.failures)
    if isinstance(error, CredentialsError):
        return Verdict(str(error), stop="no valid AWS credentials")
    if isinstance(error, AwsError):
        return Verdict(str(error))
    if isinstance(error, ClientError):
        return Verdict(str(explain(error)))
    return Verdict(f"{type(error).__name__}: {error}")
