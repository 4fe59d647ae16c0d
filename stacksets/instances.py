"""What the reader role sees of a StackSet's instance stacks in the target accounts: why an instance failed (with
its first failing events), its outputs and its drifted resources."""

from __future__ import annotations

import re
from typing import Any, Iterable

from botocore.exceptions import ClientError

from stacksets.aws import AwsError
from stacksets.calls import call, pages
from stacksets.results import InstanceFailure
from stacksets.run import Run
from stacksets.stackset_api import StackSetApi

COMPLETE_STACK_STATES = ["CREATE_COMPLETE", "UPDATE_COMPLETE", "UPDATE_ROLLBACK_COMPLETE", "IMPORT_COMPLETE",
                         "IMPORT_ROLLBACK_COMPLETE"]  # fmt: skip
FAILED_EVENTS = 5


def is_instance_stack(name: str, stackset: str) -> bool:
    """Real AWS names instance stacks StackSet-<name>-<uuid>; stock moto StackSet:<name>."""
    if name == f"StackSet:{stackset}" or name.startswith(f"StackSet:{stackset}:"):
        return True
    return re.fullmatch(rf"StackSet-{re.escape(stackset)}-[0-9a-fA-F]{{8}}(-[0-9a-fA-F]{{4}}){{3}}-[0-9a-fA-F]{{12}}",
                        name) is not None  # fmt: skip


class InstanceViews:
    def __init__(self, run: Run) -> None:
        self.run = run

    def failures(self, api: StackSetApi, pairs: Iterable[tuple[str, str]] | None = None,
                 instances: list[dict[str, Any]] | None = None) -> list[InstanceFailure]:  # fmt: skip
        """Every instance that did not succeed, with its reason and the first failing events of its stack."""
        wanted = set(pairs) if pairs is not None else None
        failures = []
        seen = set()
        for instance in api.instances() if instances is None else instances:
            pair = (instance["Account"], instance["Region"])
            seen.add(pair)
            if wanted is not None and pair not in wanted:
                continue
            detailed = instance.get("StackInstanceStatus", {}).get("DetailedStatus", "")
            if detailed == "SUCCEEDED" or (not detailed and instance.get("Status") == "CURRENT"):
                continue
            reason = instance.get("StatusReason") or f"{instance.get('Status', '')} {detailed}".strip()
            failures.append(InstanceFailure(pair[0], pair[1], reason, tuple(self.failed_events(api.name, *pair))))
        for pair in sorted((wanted or set()) - seen):
            failures.append(InstanceFailure(pair[0], pair[1], "no stack instance was created"))
        return failures

    def find_stack(self, stackset: str, account: str, region: str, complete_only: bool) -> str | None:
        """The newest instance stack of `stackset` in that account and region."""
        reader = self.run.clients.reader(account, region)
        filters = {"StackStatusFilter": COMPLETE_STACK_STATES} if complete_only else {}
        stacks = [s for s in pages(self.run, reader, "list_stacks", "StackSummaries", **filters)
                  if is_instance_stack(s["StackName"], stackset) and s.get("StackStatus") != "DELETE_COMPLETE"]
        if not stacks:
            return None
        return max(stacks, key=lambda s: str(s.get("CreationTime", "")))["StackName"]

    def failed_events(self, stackset: str, account: str, region: str) -> list[str]:
        try:
            name = self.find_stack(stackset, account, region, complete_only=False)
            if name is None:
                return []
            events = pages(self.run, self.run.clients.reader(account, region), "describe_stack_events",
                           "StackEvents", StackName=name)  # fmt: skip
        except (AwsError, ClientError) as error:
            return [f"(events unavailable: {error})"]
        failed = [e for e in reversed(events) if str(e.get("ResourceStatus", "")).endswith("_FAILED")]
        return [f"{e.get('LogicalResourceId', '')} ({e.get('ResourceType', '')}) {e['ResourceStatus']}: "
                f"{e.get('ResourceStatusReason', '')}" for e in failed[:FAILED_EVENTS]]  # fmt: skip

    def outputs(self, stackset: str, account: str, region: str) -> dict[str, str] | None:
        """The outputs of the instance stack, or None when there is no complete one."""
        name = self.find_stack(stackset, account, region, complete_only=True)
        if name is None:
            return None
        reader = self.run.clients.reader(account, region)
        stacks = call(self.run, reader, "describe_stacks", StackName=name)["Stacks"]
        return {o["OutputKey"]: o.get("OutputValue", "") for o in (stacks[0].get("Outputs") or [])}

    def resource_drifts(self, stackset: str, account: str, region: str) -> list[str]:
        """"LogicalId (Type): MODIFIED" for every drifted resource of the instance stack."""
        try:
            name = self.find_stack(stackset, account, region, complete_only=True)
            if name is None:
                return ["(instance stack not found)"]
            drifts = pages(self.run, self.run.clients.reader(account, region), "describe_stack_resource_drifts",
                           "StackResourceDrifts", StackName=name,
                           StackResourceDriftStatusFilters=["MODIFIED", "DELETED"])  # fmt: skip
        except (AwsError, ClientError) as error:
            return [f"(resource drifts unavailable: {error})"]
        return [f"{d['LogicalResourceId']} ({d.get('ResourceType', '')}): {d['StackResourceDriftStatus']}"
                for d in drifts]  # fmt: skip
