"""An in-memory StackSets service for fault injection: moto completes every operation at once, this one does not.

`FakeAws` stands in for `stacksets.aws.Clients` (`.client(service)`, `.reader(account, region)`,
`.publisher(account, region, service)`, `.region`). It implements the calls the executor makes, records every call,
and has knobs for what real StackSets do to you: operations that take N polls or simulated seconds, FAILED operations,
instances failing inside the failure tolerance, OperationInProgressException, QUEUED operations, throttling bursts and
operations that never end. Time comes from a clock shared with the executor's sleep, so nothing really sleeps.

The central account's image build is faked too: ECR repositories with their tags, and CodeBuild builds that take N
polls, check the uploaded context against its tag as the buildspec does, and push the tag when they succeed.
"""

from __future__ import annotations

import base64
import io
import threading
import time
import uuid
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from botocore.exceptions import ClientError

from stacksets.build_context import context_tag
from stacksets.naming import IMAGE_BUILD_PROJECT, IMAGES

ADMIN = "111111111111"
ECR_PASSWORD = "ecr-password-that-must-never-show"  # noqa: S105 - what the fake ECR hands out as a login token


class FakeClock:
    """A clock that sleep() advances: shared by the fake and the executor."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self.now += seconds


class SimClock:
    """Virtual time for concurrent runs: sleep() blocks until virtual time reaches the wake-up, and time jumps to
    the earliest wake-up only once every thread is asleep (no fake call or sleep for `quiet_s` of real time).
    FakeClock would let one thread race through its polls before another thread even starts."""

    def __init__(self, quiet_s: float = 0.003) -> None:
        self.now = 0.0
        self.quiet_s = quiet_s
        self.sleeps: list[float] = []
        self._wakeups: list[float] = []
        self._cond = threading.Condition()
        self._activity = time.monotonic()

    def __call__(self) -> float:
        return self.now

    def touch(self) -> None:
        self._activity = time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            return
        with self._cond:
            self.sleeps.append(seconds)
            wake = self.now + seconds
            self._wakeups.append(wake)
            self.touch()
            while self.now < wake:
                self._cond.wait(timeout=self.quiet_s)
                if self.now < wake and time.monotonic() - self._activity >= self.quiet_s:
                    # everybody sleeps: jump to the next wake-up (threads already due may not have left yet)
                    self.now = min(w for w in self._wakeups if w > self.now)
                    self.touch()
                    self._cond.notify_all()
            self._wakeups.remove(wake)


def client_error(code: str, message: str = "", operation: str = "Fake", status: int = 400) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message or code},
                        "ResponseMetadata": {"HTTPStatusCode": status}}, operation)  # fmt: skip


@dataclass
class Operation:
    id: str
    stackset: str
    action: str
    pairs: list[tuple[str, str]]
    overrides: dict[str, str] | None
    end: float
    polls_left: int
    queued_left: int
    fail: bool
    never_ends: bool
    status: str = "RUNNING"


@dataclass
class Instance:
    status: str = "OUTDATED"
    detailed: str = "PENDING"
    reason: str = ""
    overrides: dict[str, str] = field(default_factory=dict)
    drift: str = "NOT_CHECKED"
    stack: str = ""


@dataclass
class Build:
    id: str
    image: str
    tag: str
    polls_left: int
    status: str = "IN_PROGRESS"
    phase: str = ""
    reason: str = ""


@dataclass
class StackSet:
    name: str
    body: str
    parameters: dict[str, str]
    permission_model: str
    call_as: str | None
    request: dict[str, Any]
    instances: dict[tuple[str, str], Instance] = field(default_factory=dict)
    operations: dict[str, Operation] = field(default_factory=dict)
    drift: str = "NOT_CHECKED"


def default_outputs(stackset: str, account: str, region: str, parameters: dict[str, str]) -> dict[str, str]:
    """Zone StackSets publish name servers that depend on the account, so a test can follow them into network."""
    if stackset.endswith("-zone"):
        return {"NameServers": f"ns-1.{account}.example.net,ns-2.{account}.example.org", "HostedZoneId": "Z" + account}
    return {"Echo": ",".join(f"{k}={v}" for k, v in sorted(parameters.items()))}


class FakeAws:
    """The admin account's StackSets, Organizations, STS and S3, and read-only CloudFormation in target accounts."""

    def __init__(self, clock: FakeClock | SimClock | None = None, *, region: str = "eu-west-1",
                 organization: dict[str, tuple[list[str], list[str]]] | None = None) -> None:  # fmt: skip
        self.clock = clock or FakeClock()
        self.region = region
        # OU id -> (accounts directly in it, child OU ids)
        self.organization = organization or {}
        self.stacksets: dict[str, StackSet] = {}
        self.stacks: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}  # (account, region) -> name -> stack
        self.buckets: dict[str, dict[str, bytes]] = {}
        self.calls: Counter[str] = Counter()
        self.log: list[tuple[float, str, dict[str, Any]]] = []
        self.lock = threading.RLock()
        # knobs
        self.polls = 0  # describe_stack_set_operation answers RUNNING this many times before the end
        self.duration: Callable[[str, str, int], float] = lambda stackset, action, pairs: 0.0  # simulated seconds
        self.queued_polls = 0  # ... and QUEUED this many times before that
        self.fail_operations: set[tuple[str, str]] = set()  # (stackset, action) -> FAILED
        self.fail_instances: dict[tuple[str, str, str], str] = {}  # (stackset, account, region) -> reason
        self.in_progress: Counter[tuple[str, str]] = Counter()  # (stackset, api) -> OperationInProgress N times
        self.throttle: Counter[str] = Counter()  # api -> Throttling N times
        self.never_end: set[str] = set()  # stacksets whose operations stay RUNNING
        self.not_implemented: set[str] = set()  # apis answering HTTP 500 like moto
        # stackset -> condition on the fake: its operations end only once it holds (tests of concurrency)
        self.gates: dict[str, Callable[[FakeAws], bool]] = {}
        self.outputs = default_outputs
        # the central account's image build
        self.repositories: dict[str, set[str]] = {image: set() for image in IMAGES}  # repository -> tags in ECR
        self.builds: dict[str, Build] = {}
        self.build_polls = 1  # batch_get_builds answers IN_PROGRESS this many times per build
        self.fail_builds: dict[str, tuple[str, str]] = {}  # image -> (phase, context message) of a failing build
        self.pushed: Callable[[], Iterable[tuple[str, str]]] = lambda: ()  # (image, tag) pushed from outside

    # ---------------------------------------------------------------------------------------------------------------
    # the Clients interface

    def client(self, service: str, region: str | None = None) -> Any:
        return _Client(self, service, ADMIN, region or self.region)

    def reader(self, account: str, region: str, service: str = "cloudformation") -> Any:
        return _Client(self, f"reader-{service}", account, region)

    def publisher(self, account: str, region: str, service: str) -> Any:
        return _Client(self, f"publisher-{service}", account, region)

    # ---------------------------------------------------------------------------------------------------------------
    # helpers for tests

    def mutating_calls(self) -> Counter[str]:
        from stacksets.executor import MUTATING

        return Counter({api: n for api, n in self.calls.items() if api in MUTATING})

    def calls_for(self, api: str) -> list[dict[str, Any]]:
        return [kwargs for _, name, kwargs in self.log if name == api]

    def tags(self, image: str) -> set[str]:
        return self.repositories.get(image, set()) | {tag for name, tag in self.pushed() if name == image}

    def started(self, *stacksets: str) -> bool:
        """Every one of these StackSets has had an operation started."""
        return all(name in self.stacksets and self.stacksets[name].operations for name in stacksets)

    def _enter(self, api: str, kwargs: dict[str, Any]) -> None:
        touch = getattr(self.clock, "touch", None)
        if touch is not None:
            touch()
        with self.lock:
            self.calls[api] += 1
            self.log.append((self.clock(), api, kwargs))
            if api in self.not_implemented:
                raise client_error("InternalFailure", f"{api} is not yet implemented", api, status=500)
            if self.throttle[api] > 0:
                self.throttle[api] -= 1
                raise client_error("Throttling", "Rate exceeded", api)
            key = (kwargs.get("StackSetName", ""), api)
            if self.in_progress[key] > 0:
                self.in_progress[key] -= 1
                raise client_error("OperationInProgressException", "Another Operation is in progress", api)
            self._tick()

    def _tick(self) -> None:
        for stackset in list(self.stacksets.values()):
            for op in stackset.operations.values():
                if op.status not in ("RUNNING", "QUEUED") or op.never_ends or op.polls_left > 0 or op.queued_left > 0:
                    continue
                gate = self.gates.get(stackset.name)
                if self.clock() < op.end or (gate is not None and not gate(self)):
                    continue
                self._complete(stackset, op)

    def _complete(self, stackset: StackSet, op: Operation) -> None:
        if op.action == "delete_stack_instances":
            for pair in op.pairs:
                instance = stackset.instances.pop(pair, None)
                if instance and instance.stack:
                    self.stacks.get(pair, {}).pop(instance.stack, None)
        elif op.action == "detect_stack_set_drift":
            stackset.drift = "DRIFTED" if any(i.drift == "DRIFTED" for i in stackset.instances.values()) else "IN_SYNC"
        else:
            for pair in op.pairs:
                instance = stackset.instances[pair]
                if op.overrides is not None:
                    instance.overrides = dict(op.overrides)
                reason = self.fail_instances.get((stackset.name, *pair))
                self._stack(stackset, pair, instance, reason)
                if reason or op.fail:
                    instance.status, instance.detailed = "OUTDATED", "FAILED"
                    instance.reason = reason or "operation failed"
                else:
                    instance.status, instance.detailed, instance.reason = "CURRENT", "SUCCEEDED", ""
        op.status = "FAILED" if op.fail else "SUCCEEDED"

    def _stack(self, stackset: StackSet, pair: tuple[str, str], instance: Instance, reason: str | None) -> None:
        stacks = self.stacks.setdefault(pair, {})
        if not instance.stack:
            instance.stack = f"StackSet-{stackset.name}-{uuid.uuid4()}"
        parameters = {**stackset.parameters, **instance.overrides}
        events = []
        if reason:
            events = [  # newest first, like DescribeStackEvents
                {"LogicalResourceId": instance.stack, "ResourceType": "AWS::CloudFormation::Stack",
                 "ResourceStatus": "ROLLBACK_COMPLETE", "ResourceStatusReason": ""},
                {"LogicalResourceId": "Later", "ResourceType": "AWS::S3::Bucket", "ResourceStatus": "CREATE_FAILED",
                 "ResourceStatusReason": "Resource creation cancelled"},
                {"LogicalResourceId": "First", "ResourceType": "AWS::S3::Bucket", "ResourceStatus": "CREATE_FAILED",
                 "ResourceStatusReason": reason},
            ]  # fmt: skip
        stacks[instance.stack] = {
            "StackName": instance.stack, "StackStatus": "ROLLBACK_COMPLETE" if reason else "CREATE_COMPLETE",
            "CreationTime": f"{self.clock():020.3f}", "Parameters": parameters, "Events": events,
            "Outputs": {} if reason else self.outputs(stackset.name, pair[0], pair[1], parameters),
        }  # fmt: skip

    # ---------------------------------------------------------------------------------------------------------------
    # StackSets

    def _get(self, name: str) -> StackSet:
        if name not in self.stacksets:
            raise client_error("StackSetNotFoundException", f"StackSet {name} not found")
        return self.stacksets[name]

    def _pairs(self, stackset: StackSet, kwargs: dict[str, Any]) -> list[tuple[str, str]]:
        targets = kwargs.get("DeploymentTargets")
        if stackset.permission_model == "SERVICE_MANAGED":
            if kwargs.get("Accounts") and targets:
                raise client_error("ValidationError", "specify Accounts or DeploymentTargets, not both")
            if not targets or not targets.get("OrganizationalUnitIds"):
                raise client_error("ValidationError", "SERVICE_MANAGED StackSets take DeploymentTargets with OUs")
            in_ous = set().union(*(self.accounts_under(ou) for ou in targets["OrganizationalUnitIds"]))
            if targets.get("AccountFilterType") == "INTERSECTION":
                accounts = [a for a in targets.get("Accounts", []) if a in in_ous]
            else:
                accounts = sorted(in_ous)
        else:
            if targets:
                raise client_error("ValidationError", "SELF_MANAGED StackSets take Accounts")
            accounts = kwargs.get("Accounts", [])
        return [(a, r) for a in accounts for r in kwargs["Regions"]]

    def accounts_under(self, ou: str) -> set[str]:
        accounts, children = self.organization.get(ou, ([], []))
        return set(accounts).union(*(self.accounts_under(child) for child in children))

    def _start(self, stackset: StackSet, action: str, kwargs: dict[str, Any], pairs: list[tuple[str, str]],
               overrides: dict[str, str] | None = None) -> dict[str, str]:  # fmt: skip
        self._check_call_as(stackset, kwargs)
        op_id = kwargs.get("OperationId") or str(uuid.uuid4())
        if any(op_id in s.operations for s in self.stacksets.values()):
            raise client_error("OperationIdAlreadyExistsException", f"operation {op_id} already exists")
        stackset.operations[op_id] = Operation(
            op_id, stackset.name, action, pairs, overrides, end=self.clock() + self.duration(stackset.name, action,
            len(pairs)), polls_left=self.polls, queued_left=self.queued_polls,
            fail=(stackset.name, action) in self.fail_operations, never_ends=stackset.name in self.never_end,
            status="QUEUED" if self.queued_polls else "RUNNING")  # fmt: skip
        if action in ("create_stack_instances", "update_stack_instances", "update_stack_set"):
            for pair in pairs:
                instance = stackset.instances.setdefault(pair, Instance())
                instance.status, instance.detailed = "OUTDATED", "PENDING"
        self._tick()
        return {"OperationId": op_id}

    def _check_call_as(self, stackset: StackSet | None, kwargs: dict[str, Any]) -> None:
        if stackset is not None and stackset.call_as != kwargs.get("CallAs"):
            raise client_error("StackSetNotFoundException", f"StackSet {stackset.name} not found (CallAs differs)")

    def create_stack_set(self, **kw: Any) -> dict[str, Any]:
        if kw["StackSetName"] in self.stacksets:
            raise client_error("NameAlreadyExistsException", "exists")
        body = kw.get("TemplateBody")
        if body is None:
            bucket, key = kw["TemplateURL"].split("://", 1)[1].split(".s3.", 1)[0], kw["TemplateURL"].split("/", 3)[3]
            body = self.buckets[bucket][key].decode("utf-8")
        self.stacksets[kw["StackSetName"]] = StackSet(
            kw["StackSetName"], body, {p["ParameterKey"]: p["ParameterValue"] for p in kw.get("Parameters", [])},
            kw.get("PermissionModel", "SELF_MANAGED"), kw.get("CallAs"), kw)  # fmt: skip
        return {"StackSetId": kw["StackSetName"] + ":1"}

    def describe_stack_set(self, **kw: Any) -> dict[str, Any]:
        s = self._get(kw["StackSetName"])
        self._check_call_as(s, kw)
        return {"StackSet": {"StackSetName": s.name, "Status": "ACTIVE", "TemplateBody": s.body,
                             "Parameters": [{"ParameterKey": k, "ParameterValue": v}
                                            for k, v in sorted(s.parameters.items())],
                             "PermissionModel": s.permission_model,
                             "StackSetDriftDetectionDetails": {"DriftStatus": s.drift}}}  # fmt: skip

    def update_stack_set(self, **kw: Any) -> dict[str, Any]:
        s = self._get(kw["StackSetName"])
        self._check_call_as(s, kw)
        answer = self._start(s, "update_stack_set", kw, sorted(s.instances))
        if "TemplateBody" in kw:
            s.body = kw["TemplateBody"]
        else:
            url = kw["TemplateURL"]
            s.body = self.buckets[url.split("://", 1)[1].split(".s3.", 1)[0]][url.split("/", 3)[3]].decode("utf-8")
        s.parameters = {p["ParameterKey"]: p["ParameterValue"] for p in kw.get("Parameters", [])}
        return answer

    def delete_stack_set(self, **kw: Any) -> dict[str, Any]:
        s = self._get(kw["StackSetName"])
        self._check_call_as(s, kw)
        if s.instances:
            raise client_error("StackSetNotEmptyException", "StackSet still has instances")
        del self.stacksets[s.name]
        return {}

    def create_stack_instances(self, **kw: Any) -> dict[str, Any]:
        s = self._get(kw["StackSetName"])
        pairs = self._pairs(s, kw)
        overrides = {p["ParameterKey"]: p["ParameterValue"] for p in kw.get("ParameterOverrides", [])}
        return self._start(s, "create_stack_instances", kw, pairs, overrides)

    def update_stack_instances(self, **kw: Any) -> dict[str, Any]:
        s = self._get(kw["StackSetName"])
        pairs = self._pairs(s, kw)
        overrides = {p["ParameterKey"]: p["ParameterValue"] for p in kw.get("ParameterOverrides", [])}
        return self._start(s, "update_stack_instances", kw, pairs, overrides)

    def delete_stack_instances(self, **kw: Any) -> dict[str, Any]:
        s = self._get(kw["StackSetName"])
        return self._start(s, "delete_stack_instances", kw, [p for p in self._pairs(s, kw) if p in s.instances])

    def detect_stack_set_drift(self, **kw: Any) -> dict[str, Any]:
        s = self._get(kw["StackSetName"])
        return self._start(s, "detect_stack_set_drift", kw, sorted(s.instances))

    def describe_stack_set_operation(self, **kw: Any) -> dict[str, Any]:
        s = self._get(kw["StackSetName"])
        self._check_call_as(s, kw)
        op = s.operations.get(kw["OperationId"])
        if op is None:
            raise client_error("OperationNotFoundException", "no such operation")
        if op.queued_left > 0:
            op.queued_left -= 1
            op.status = "QUEUED" if op.queued_left > 0 else "RUNNING"
        elif op.polls_left > 0:
            op.polls_left -= 1
        if op.status == "QUEUED" and op.queued_left == 0:
            op.status = "RUNNING"
        self._tick()
        return {"StackSetOperation": {"OperationId": op.id, "Action": op.action, "Status": op.status,
                                      **({"StatusReason": "failure tolerance exceeded"} if op.status == "FAILED"
                                         else {})}}  # fmt: skip

    def list_stack_instances(self, **kw: Any) -> dict[str, Any]:
        s = self._get(kw["StackSetName"])
        self._check_call_as(s, kw)
        return {"Summaries": [
            {"StackSetId": s.name, "Account": a, "Region": r, "Status": i.status, "StatusReason": i.reason,
             "StackInstanceStatus": {"DetailedStatus": i.detailed}, "DriftStatus": i.drift}
            for (a, r), i in sorted(s.instances.items())]}  # fmt: skip

    def describe_stack_instance(self, **kw: Any) -> dict[str, Any]:
        s = self._get(kw["StackSetName"])
        self._check_call_as(s, kw)
        pair = (kw["StackInstanceAccount"], kw["StackInstanceRegion"])
        if pair not in s.instances:
            raise client_error("StackInstanceNotFoundException", "no such instance")
        i = s.instances[pair]
        return {"StackInstance": {"Account": pair[0], "Region": pair[1], "Status": i.status,
                                  "ParameterOverrides": [{"ParameterKey": k, "ParameterValue": v}
                                                         for k, v in sorted(i.overrides.items())]}}  # fmt: skip


class _Client:
    """One service as seen from one account; every method goes through FakeAws._enter (records, faults)."""

    def __init__(self, fake: FakeAws, service: str, account: str, region: str) -> None:
        self.fake, self.service, self.account, self.region = fake, service, account, region

    def __getattr__(self, api: str) -> Callable[..., Any]:
        if api.startswith("_"):
            raise AttributeError(api)
        handler = getattr(self, f"_{self.service.replace('-', '_')}_{api}", None)
        if handler is None and self.service == "cloudformation":
            handler = getattr(self.fake, api, None)
        if handler is None:
            raise AttributeError(f"the fake {self.service} has no {api}")

        def call(**kwargs: Any) -> Any:
            with self.fake.lock:
                self.fake._enter(api, kwargs)
                return handler(**kwargs)

        return call

    # organizations
    def _organizations_list_accounts_for_parent(self, ParentId: str, **_: Any) -> dict[str, Any]:  # noqa: N803
        accounts, _children = self.fake.organization.get(ParentId, ([], []))
        return {"Accounts": [{"Id": a, "Status": "ACTIVE"} for a in accounts]}

    def _organizations_list_children(self, ParentId: str, ChildType: str, **_: Any) -> dict[str, Any]:  # noqa: N803
        _accounts, children = self.fake.organization.get(ParentId, ([], []))
        return {"Children": [{"Id": c, "Type": ChildType} for c in children]}

    # sts
    def _sts_get_caller_identity(self) -> dict[str, str]:
        return {"Account": self.account}

    # s3
    def _s3_head_bucket(self, Bucket: str) -> dict[str, Any]:  # noqa: N803
        if Bucket not in self.fake.buckets:
            raise client_error("404", "Not Found", "HeadBucket", 404)
        return {}

    def _s3_create_bucket(self, Bucket: str, **_: Any) -> dict[str, Any]:  # noqa: N803
        self.fake.buckets[Bucket] = {}
        return {}

    def _s3_put_public_access_block(self, **_: Any) -> dict[str, Any]:
        return {}

    def _s3_put_bucket_encryption(self, **_: Any) -> dict[str, Any]:
        return {}

    def _s3_head_object(self, Bucket: str, Key: str) -> dict[str, Any]:  # noqa: N803
        if Key not in self.fake.buckets.get(Bucket, {}):
            raise client_error("404", "Not Found", "HeadObject", 404)
        return {}

    def _s3_put_object(self, Bucket: str, Key: str, Body: bytes, **_: Any) -> dict[str, Any]:  # noqa: N803
        self.fake.buckets[Bucket][Key] = Body
        return {}

    # cloudformation in a target account, through the reader role
    def _stacks(self) -> dict[str, dict[str, Any]]:
        return self.fake.stacks.get((self.account, self.region), {})

    def _reader_cloudformation_list_stacks(self, StackStatusFilter: list[str] | None = None,  # noqa: N803
                                           **_: Any) -> dict[str, Any]:  # fmt: skip
        return {"StackSummaries": [{"StackName": s["StackName"], "StackStatus": s["StackStatus"],
                                    "CreationTime": s["CreationTime"]}
                                   for s in self._stacks().values()
                                   if StackStatusFilter is None or s["StackStatus"] in StackStatusFilter]}  # fmt: skip

    def _reader_cloudformation_describe_stacks(self, StackName: str) -> dict[str, Any]:  # noqa: N803
        s = self._stacks()[StackName]
        return {
            "Stacks": [
                {
                    "StackName": StackName,
                    "StackStatus": s["StackStatus"],
                    "Parameters": [{"ParameterKey": k, "ParameterValue": v} for k, v in s["Parameters"].items()],
                    "Outputs": [{"OutputKey": k, "OutputValue": v} for k, v in s["Outputs"].items()],
                }
            ]
        }

    def _reader_cloudformation_describe_stack_events(self, StackName: str) -> dict[str, Any]:  # noqa: N803
        return {"StackEvents": self._stacks()[StackName]["Events"]}

    # the central account through the publisher role
    def _publisher_ecr_describe_images(self, repositoryName: str, imageIds: list[dict[str, str]],  # noqa: N803
                                       **_: Any) -> dict[str, Any]:  # fmt: skip
        if repositoryName not in self.fake.repositories:
            raise client_error("RepositoryNotFoundException", f"repository {repositoryName} not found")
        tags = self.fake.tags(repositoryName)
        wanted = [i["imageTag"] for i in imageIds]
        if any(tag not in tags for tag in wanted):
            raise client_error("ImageNotFoundException", f"no image {wanted} in {repositoryName}")
        return {"imageDetails": [{"repositoryName": repositoryName, "imageTags": [tag]} for tag in wanted]}

    def _publisher_ecr_get_authorization_token(self) -> dict[str, Any]:
        token = base64.b64encode(f"AWS:{ECR_PASSWORD}".encode()).decode()
        endpoint = f"https://{self.account}.dkr.ecr.{self.region}.amazonaws.com"
        return {"authorizationData": [{"authorizationToken": token, "proxyEndpoint": endpoint}]}

    def _publisher_s3_put_object(self, Bucket: str, Key: str, Body: bytes, **_: Any) -> dict[str, Any]:  # noqa: N803
        self.fake.buckets.setdefault(Bucket, {})[Key] = Body
        return {}

    def _publisher_codebuild_start_build(self, projectName: str, environmentVariablesOverride: list[dict[str, str]]  # noqa: N803
                                         ) -> dict[str, Any]:  # fmt: skip
        if projectName != IMAGE_BUILD_PROJECT:
            raise client_error("ResourceNotFoundException", f"project {projectName} not found")
        variables = {v["name"]: v["value"] for v in environmentVariablesOverride if v.get("type") == "PLAINTEXT"}
        build = Build(f"{projectName}:{uuid.uuid4()}", variables["IMAGE_NAME"], variables["IMAGE_TAG"],
                      self.fake.build_polls)  # fmt: skip
        self.fake.builds[build.id] = build
        return {"build": {"id": build.id, "buildStatus": "IN_PROGRESS"}}

    def _publisher_codebuild_batch_get_builds(self, ids: list[str]) -> dict[str, Any]:
        builds = [self.fake.builds[i] for i in ids if i in self.fake.builds]
        for build in builds:
            if build.status == "IN_PROGRESS":
                if build.polls_left > 0:
                    build.polls_left -= 1
                else:
                    self._finish(build)
        return {"builds": [self._build_answer(b) for b in builds],
                "buildsNotFound": [i for i in ids if i not in self.fake.builds]}  # fmt: skip

    def _finish(self, build: Build) -> None:
        """What the buildspec does: the uploaded context must hash to its tag, then it builds and pushes."""
        key = f"contexts/{build.image}/{build.tag}.zip"
        archive = next((objects[key] for objects in self.fake.buckets.values() if key in objects), None)
        if archive is None:
            build.status, build.phase, build.reason = "FAILED", "PRE_BUILD", f"no s3 object {key}"
        elif _context_tag_of(archive) != build.tag:
            build.status, build.phase, build.reason = "FAILED", "PRE_BUILD", f"{key} does not hash to {build.tag}"
        elif build.image in self.fake.fail_builds:
            build.status = "FAILED"
            build.phase, build.reason = self.fake.fail_builds[build.image]
        else:
            build.status = "SUCCEEDED"
            self.fake.repositories.setdefault(build.image, set()).add(build.tag)

    def _build_answer(self, build: Build) -> dict[str, Any]:
        stream = build.id.split(":", 1)[1]
        answer: dict[str, Any] = {
            "id": build.id, "buildStatus": build.status, "currentPhase": build.phase or "BUILD",
            "logs": {"groupName": "/rstudio/central/image-build", "streamName": stream,
                     "deepLink": f"https://console.aws.amazon.com/cloudwatch/home?region={self.region}#logEvent:"
                                 f"group=/rstudio/central/image-build;stream={stream}"},
        }  # fmt: skip
        if build.status == "FAILED":
            answer["phases"] = [
                {"phaseType": "SUBMITTED", "phaseStatus": "SUCCEEDED"},
                {"phaseType": build.phase, "phaseStatus": "FAILED",
                 "contexts": [{"statusCode": "COMMAND_EXECUTION_ERROR", "message": build.reason}]},
            ]  # fmt: skip
        return answer

    def _publisher_logs_get_log_events(self, logGroupName: str, logStreamName: str, **_: Any) -> dict[str, Any]:  # noqa: N803
        build = next(b for b in self.fake.builds.values() if b.id.endswith(logStreamName))
        lines = [f"[Container] Running {build.image} {build.tag}", "", f"[Container] Phase {build.phase} FAILED"]
        return {"events": [{"message": line + "\n"} for line in lines]}

    def _reader_cloudformation_describe_stack_resource_drifts(self, StackName: str, **_: Any) -> dict[str, Any]:  # noqa: N803
        return {"StackResourceDrifts": [{"LogicalResourceId": "Bucket", "ResourceType": "AWS::S3::Bucket",
                                         "StackResourceDriftStatus": "MODIFIED"}]}  # fmt: skip


def _context_tag_of(archive: bytes) -> str:
    with zipfile.ZipFile(io.BytesIO(archive)) as zipped:
        return context_tag({name: zipped.read(name) for name in zipped.namelist()})
