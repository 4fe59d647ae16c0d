"""The lifecycle of one StackSet operation: start it under a recorded client OperationId, wait for it to end, and
reattach to one an interrupted run left behind.

Waiting never blocks: the functions here are generators that yield a `Park` whenever there is nothing to do but
wait, and the walk resumes them when it is time to look again.
"""

from __future__ import annotations

import uuid
from typing import Any, Generator

from botocore.exceptions import ClientError

from stacksets.aws import AwsError, explain
from stacksets.calls import error_code
from stacksets.instances import InstanceViews, instance_counts
from stacksets.results import InstanceCounts, NodeFailed, State
from stacksets.run import Run
from stacksets.stackset_api import StackSetApi
from stacksets.state import StateFile
from stacksets.walk import Park

IN_FLIGHT = {"RUNNING", "QUEUED", "STOPPING"}
# the cap with only a few operations in flight: each is noticed 7.5 s after its end on average (performance review
# §3.1: 1.083 x of the critical path at a 60 s cap, 1.042 x at 30 s, 1.000 x at 15 s)
MAX_POLL_S = 15.0
MAX_POLL_CAP_S = 120.0
POLLS_PER_S = 4.0  # requests, well inside the paced request rate of the admin account's CloudFormation client
# an operation's poll reads the operation and, for the live progress, its StackSet's instances
REQUESTS_PER_POLL = 2
# drift detection leaves the instances' DetailedStatus alone: counting them would show the last deploy's
UNCOUNTED = {"detect_stack_set_drift"}


class Deadline:
    """The time limit of one wait: past it the wait fails, and the operation is left for the next run."""

    def __init__(self, run: Run, until: float) -> None:
        self.run = run
        self.until = until

    def check(self, what: str, why: str) -> None:
        if self.run.clock() >= self.until:
            raise NodeFailed(f"{what}: gave up after the {self.run.options.timeout_s:g} s time limit: {why}; it keeps "
                             "running in AWS, and the next run reattaches to it")  # fmt: skip

    def park(self, seconds: float) -> Park:
        """Wait `seconds`, but never past the limit (so the limit is noticed on time)."""
        return Park(max(0.0, min(seconds, self.until - self.run.clock())))


def backoff(run: Run, requests: int = 1) -> Generator[float, None, None]:
    """Poll intervals: `poll_s`, doubling up to a cap that grows with the operations being polled at once, so that
    together their polls (of `requests` calls each) send about POLLS_PER_S requests a second: every 15 s each with a
    few dozen in flight, less often when a rollout waits on hundreds, whose polls would otherwise queue behind each
    other or be throttled."""
    with run.lock:
        run.waiting += requests
    delay = run.options.poll_s
    try:
        while True:
            cap = min(MAX_POLL_CAP_S, max(MAX_POLL_S, run.waiting / POLLS_PER_S))
            delay = min(delay, cap)
            yield delay
            delay = min(delay * 2, cap)
    finally:
        with run.lock:
            run.waiting -= requests


class Operations:
    def __init__(self, run: Run, state: StateFile, views: InstanceViews) -> None:
        self.run = run
        self.state = state
        self.views = views

    def deadline(self) -> Deadline:
        """The time limit of a wait that starts now: `timeout_s` per operation, not per run (a rollout of many
        operations in a chain may take far longer than any one of them)."""
        return Deadline(self.run, self.run.clock() + self.run.options.timeout_s)

    def perform(self, api: StackSetApi, action: str, **kwargs: Any) -> Generator[Park, None, dict[str, Any]]:
        """Start `action` with a recorded client-supplied id and wait for it to succeed (NodeFailed otherwise)."""
        operation_id = str(uuid.uuid4())
        self.state.record(api.name, operation_id, action)
        self.run.emit(api.name, State.RUNNING, action)
        start = self.run.clock()
        deadline = self.deadline()
        operation_id = yield from self._start(api, action, operation_id, deadline, kwargs)
        self.run.report.results[api.name].operations.append(operation_id)
        counted = action not in UNCOUNTED and _spread(kwargs) != 1
        succeeded = False
        try:
            operation = yield from self.wait(api, operation_id, action, deadline, counted)
            succeeded = True
            return operation
        finally:
            self.run.timeline(api.name, action, start, succeeded)

    def _start(self, api: StackSetApi, action: str, operation_id: str, deadline: Deadline,
               kwargs: dict[str, Any]) -> Generator[Park, None, str]:  # fmt: skip
        """The id of the started operation; OperationInProgress (another operation on this StackSet) is waited out."""
        delays = backoff(self.run)
        while True:
            try:
                answer = api.start_operation(action, operation_id, **kwargs)
            except ClientError as error:
                code = error_code(error)
                if code == "OperationIdAlreadyExistsException":
                    return operation_id  # an earlier attempt of this very call went through: wait for it
                if code != "OperationInProgressException":
                    self.state.clear(api.name, operation_id)
                    raise NodeFailed(str(explain(error))) from None
                deadline.check(action, "another operation on this StackSet is still running")
                yield deadline.park(next(delays))
                continue
            return answer.get("OperationId", operation_id)

    def wait(self, api: StackSetApi, operation_id: str, action: str, deadline: Deadline,
             counted: bool = True) -> Generator[Park, None, dict[str, Any]]:  # fmt: skip
        """Poll right away, then with backoff, until the operation ends; NodeFailed unless it SUCCEEDED. When
        `counted`, each poll and the end report the StackSet's instance counts (for the progress view)."""
        delays = backoff(self.run, REQUESTS_PER_POLL if counted else 1)
        while True:
            try:
                operation = api.describe_operation(operation_id)
            except ClientError as error:
                raise NodeFailed(str(explain(error))) from None
            status = operation.get("Status", "")
            instances = self._instances(api) if counted else None
            self.run.emit(api.name, State.RUNNING, action, status.lower(), _counts(instances))
            if status not in IN_FLIGHT:
                break
            deadline.check(f"{action} {operation_id}", f"the operation is still {status}")
            yield deadline.park(next(delays))
        self.state.clear(api.name, operation_id)
        if status != "SUCCEEDED":
            reason = operation.get("StatusReason") or "see the instance failures below"
            failures = self.views.failures(api, instances=instances)
            raise NodeFailed(f"{action} {operation_id} {status}: {reason}", failures)
        return operation

    def _instances(self, api: StackSetApi) -> list[dict[str, Any]] | None:
        """The StackSet's instances, or None when they cannot be read: the counts only inform, they never fail
        the operation being waited for."""
        try:
            return api.instances()
        except (AwsError, ClientError):
            return None

    def reattach(self, api: StackSetApi) -> Generator[Park, None, bool]:
        """An operation recorded by an interrupted run: wait for it instead of starting another. True when there
        was one (the node then counts as changed by this run even if nothing else is left to do)."""
        pending = self.state.pending(api.name)
        if not pending:
            return False
        operation_id, action = pending["operation_id"], pending["action"]
        try:
            operation = api.describe_operation(operation_id)
        except ClientError as error:
            if error_code(error) not in ("OperationNotFoundException", "StackSetNotFoundException"):
                # throttled past the retries, access denied ...: the operation may well be running; keep the record
                raise NodeFailed(f"cannot look up the operation {operation_id} an earlier run left in flight "
                                 f"({explain(error)}); it stays recorded in {self.state.path}") from None
            self.state.clear(api.name)  # unknown to AWS (never started, or long expired)
            return False
        self.run.report.results[api.name].operations.append(operation_id)
        if operation.get("Status") in IN_FLIGHT:
            self.run.emit(api.name, State.RUNNING, action, f"reattached to {operation_id}")
            start = self.run.clock()
            succeeded = False
            try:
                yield from self.wait(api, operation_id, action, self.deadline())
                succeeded = True
            except NodeFailed:
                pass  # the live diff that follows decides what still has to happen
            finally:
                self.run.timeline(api.name, action, start, succeeded)
        self.state.clear(api.name)
        return True


def _spread(kwargs: dict[str, Any]) -> int | None:
    """How many stack instances an instances operation targets, when its arguments say (None: all of the StackSet's,
    or whatever its OUs hold). An operation on one instance is not counted while it runs: its status says as much,
    and most of a large plan's operations are of that kind (the count would add a request to each of their polls)."""
    accounts = kwargs.get("Accounts", kwargs.get("DeploymentTargets", {}).get("Accounts"))
    if "Regions" not in kwargs or accounts is None:
        return None
    return len(kwargs["Regions"]) * len(accounts)


def _counts(instances: list[dict[str, Any]] | None) -> InstanceCounts | None:
    return None if instances is None else instance_counts(instances)
