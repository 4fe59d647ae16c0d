"""What the executor hands back: node states, progress events, diffs, per-node results and the run's report.

Plain data with no AWS knowledge, so the report and progress formatters can import it without the executor.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from enum import Enum
from typing import Iterable, Union


class State(str, Enum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    SKIPPED = "SKIPPED"
    UNCHANGED = "UNCHANGED"


@dataclass(frozen=True)
class InstanceCounts:
    """A StackSet's stack instances by where they stand, as ListStackInstances reports them during an operation."""

    succeeded: int = 0
    failed: int = 0  # ended in anything but SUCCEEDED: FAILED, CANCELLED, INOPERABLE, a suspended account, ...
    in_progress: int = 0  # PENDING or RUNNING in the operation under way
    total: int = 0


@dataclass(frozen=True)
class Event:
    stackset: str
    state: State
    operation: str  # the API action in progress ("create_stack_instances"), or ""
    done: int  # StackSets finished so far in this run (the run's count, not this StackSet's)
    total: int  # StackSets in this run
    message: str
    at: float  # clock() seconds since the run started
    instances: InstanceCounts | None = None  # this StackSet's stack instances, when the event read them


@dataclass(frozen=True)
class NodeDiff:
    """What a deploy would change in one StackSet. Parameter values not known yet read "(from <ref>)"."""

    stackset: str
    exists: bool
    template_changed: bool
    parameters_changed: bool
    parameters: dict[str, str]
    create: tuple[tuple[str, str], ...] = ()
    # OUTDATED instances (a failed or interrupted earlier operation): CreateStackInstances retries them (botocore model
    # CreateStackInstances.OperationId: "retries all stack instances whose status is OUTDATED"); an update would be
    # refused by a stack that rolled back its creation
    retry: tuple[tuple[str, str], ...] = ()
    instances: int = 0  # stack instances the StackSet has after the deploy (for the quota check)
    update: tuple[tuple[str, str], ...] = ()
    delete: tuple[tuple[str, str], ...] = ()
    orphaned: tuple[tuple[str, str], ...] = ()  # live instances the plan no longer has, kept without --prune
    warnings: tuple[str, ...] = ()
    # what is deployed now (None: no StackSet yet): the plan's cost delta prices it against the committed template
    live_template: str | None = field(default=None, repr=False, compare=False)
    live_pairs: tuple[tuple[str, str], ...] = ()

    @property
    def name(self) -> str:
        return self.stackset

    @property
    def changed(self) -> bool:
        return (not self.exists or self.template_changed or self.parameters_changed
                or bool(self.create or self.retry or self.update or self.delete))  # fmt: skip


@dataclass(frozen=True)
class ImageDiff:
    """What a deploy would build: the pinned image tags the central account's ECR does not hold yet."""

    name: str
    present: tuple[tuple[str, str], ...] = ()  # (image, tag)
    missing: tuple[tuple[str, str], ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        return bool(self.missing)


Diff = Union[NodeDiff, ImageDiff]


@dataclass(frozen=True)
class InstanceFailure:
    account: str
    region: str
    reason: str
    events: tuple[str, ...] = ()


@dataclass(frozen=True)
class DriftedInstance:
    account: str
    region: str
    resources: tuple[str, ...] = ()  # "LogicalId (Type): MODIFIED"


@dataclass(frozen=True)
class UndeliveredMail:
    """Welcome e-mails an instance's stack did not send in this run: the instance is deployed all the same."""

    account: str
    region: str
    function: str  # the welcome function, which resends when invoked with {"resend": [user, ...]}
    undelivered: tuple[tuple[str, str, str], ...]  # (user, address, why); no user when only a count came back


@dataclass(frozen=True)
class ImageOutcome:
    image: str
    tag: str
    outcome: str  # "present", "built", "simulated" or "failed"
    seconds: float = 0.0
    build_id: str = ""


@dataclass
class NodeResult:
    stackset: str
    state: State = State.PENDING
    message: str = ""
    failures: list[InstanceFailure] = field(default_factory=list)
    operations: list[str] = field(default_factory=list)
    retained: list[tuple[str, str]] = field(default_factory=list)  # (resource type, logical id) kept by destroy
    drifted: list[DriftedInstance] = field(default_factory=list)
    images: list[ImageOutcome] = field(default_factory=list)  # the image step only
    mail: list[UndeliveredMail] = field(default_factory=list)  # instance StackSets with welcome e-mail


@dataclass(frozen=True)
class TimelineEntry:
    stackset: str
    operation: str
    start: float
    end: float
    result: str = "SUCCEEDED"  # or "FAILED": the operation (or build) did not succeed


@dataclass
class Report:
    results: dict[str, NodeResult] = field(default_factory=dict)
    calls: Counter[str] = field(default_factory=Counter)  # mutating calls per API name
    calls_by_stackset: dict[str, Counter[str]] = field(default_factory=dict)  # every call, per StackSet
    timeline: list[TimelineEntry] = field(default_factory=list)
    # the DAG the run walked (step -> the steps it waited for), which the timeline's critical path follows back
    depends_on: dict[str, tuple[str, ...]] = field(default_factory=dict)
    elapsed: float = 0.0

    @property
    def ok(self) -> bool:
        return all(r.state in (State.SUCCEEDED, State.UNCHANGED) for r in self.results.values())

    @property
    def drifted(self) -> bool:
        return any(r.drifted for r in self.results.values())


@dataclass(frozen=True)
class StatusRow:
    stackset: str
    account: str  # "" on the StackSet's own row
    region: str
    status: str
    detailed_status: str = ""
    drift_status: str = ""
    reason: str = ""


class NodeFailed(Exception):
    """One StackSet (or the image step) failed: the message and the instances behind it go into its NodeResult."""

    def __init__(self, message: str, failures: Iterable[InstanceFailure] = ()) -> None:
        super().__init__(message)
        self.failures = list(failures)
