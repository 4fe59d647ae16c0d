"""The stacks behind stack instances, and the CloudFormation stack API a target account's reader role sees.

Rules (docs/aws_model.md):
- Instance stacks are ordinary stacks named `StackSet-<StackSet name>-<uuid>` in the target account and Region
  (aws-solutions/aws-control-tower-customizations #100; a real example in aws-samples/... #37), with the StackSet's
  parameters and the instance's overrides.
- ListStacks lists deleted stacks too, with DELETE_COMPLETE, for 90 days (API reference ListStacks); DescribeStacks
  finds a deleted stack only by its stack id ("Stack with id X does not exist").
- DescribeStackEvents lists newest first (API reference DescribeStackEvents).
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from stacksets.awsmodel.adapter import ModelError
from stacksets.awsmodel.engine import Stack, StackEngine, StackRefused
from stacksets.awsmodel.stacksets import PAGE, timestamp

if TYPE_CHECKING:
    from stacksets.awsmodel.services import Caller
    from stacksets.awsmodel.stacksets import StackInstance, StackSet

COMPLETE = ("CREATE_COMPLETE", "UPDATE_COMPLETE")


class Stacks:
    def __init__(self, engine: StackEngine) -> None:
        self.engine = engine
        self.by_place: dict[tuple[str, str], list[Stack]] = {}  # (account, region) -> every stack ever created

    # --- what StackSets operations do ------------------------------------------------------------------------------

    def deploy(self, s: StackSet, instance: StackInstance, action: str) -> tuple[bool, str]:
        parameters = {**s.parameters, **instance.overrides}
        stack = instance.stack
        try:
            if stack is None or stack.status == "DELETE_COMPLETE" or (action == "CREATE" and
                                                                      stack.status == "ROLLBACK_COMPLETE"):  # fmt: skip
                if stack is not None and stack.status == "ROLLBACK_COMPLETE":
                    self.engine.delete(stack)
                stack = self.engine.create(f"StackSet-{s.name}-{uuid.uuid4()}", instance.account, instance.region,
                                           s.body, parameters, stackset=s.name)  # fmt: skip
                instance.stack = stack
                self.by_place.setdefault((instance.account, instance.region), []).append(stack)
            else:
                self.engine.update(stack, s.body, parameters)
        except StackRefused as error:
            return False, error.message
        if stack.status in COMPLETE:
            return True, ""
        return False, stack.status_reason or _first_failure(stack) or stack.status

    def delete(self, instance: StackInstance) -> tuple[bool, str]:
        stack = instance.stack
        self.engine.delete(stack)
        if stack.status == "DELETE_COMPLETE":
            return True, ""
        return False, stack.status_reason or _first_failure(stack) or stack.status

    def live(self, account: str, region: str | None = None) -> list[Stack]:
        return [stack for (a, r), stacks in self.by_place.items() if a == account and region in (None, r)
                for stack in stacks if stack.status != "DELETE_COMPLETE"]  # fmt: skip

    def find_resource(self, account: str, region: str | None, resource_type: str, name: str) -> tuple[Stack, Any]:
        """The live stack and resource of this type and physical name (a bucket, repository, role ...), in stacks
        being created too (a custom resource's function acts as a role its own stack just created)."""
        for stack in list(self.engine.registry.stacks.values()):
            if stack.account != account or region not in (None, stack.region):
                continue
            for resource in stack.resources.values():
                if resource.resource_type == resource_type and name in (resource.name, resource.physical_id):
                    return stack, resource
        raise KeyError(name)

    # --- the stack API, as the reader role sees it -----------------------------------------------------------------

    def _stacks(self, caller: Caller) -> list[Stack]:
        return self.by_place.get((caller.account, caller.region), [])

    def _find(self, caller: Caller, name: str) -> Stack:
        for stack in reversed(self._stacks(caller)):
            if stack.stack_id == name or (stack.name == name and stack.status != "DELETE_COMPLETE"):
                return stack
        raise ModelError("ValidationError", f"Stack with id {name} does not exist")

    def list_stacks(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        wanted = params.get("StackStatusFilter")
        rows = []
        for stack in reversed(self._stacks(caller)):
            if wanted and stack.status not in wanted:
                continue
            row = {"StackId": stack.stack_id, "StackName": stack.name, "StackStatus": stack.status,
                   "CreationTime": timestamp(stack.creation_time)}  # fmt: skip
            if stack.status_reason:
                row["StackStatusReason"] = stack.status_reason
            rows.append(row)
        return _paged("StackSummaries", rows, params)

    def describe_stacks(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        if "StackName" not in params:
            raise ModelError("ModelGap", "the model answers DescribeStacks for one named stack only")
        stack = self._find(caller, params["StackName"])
        answer: dict[str, Any] = {
            "StackId": stack.stack_id, "StackName": stack.name, "StackStatus": stack.status,
            "CreationTime": timestamp(stack.creation_time),
            "Parameters": [{"ParameterKey": k, "ParameterValue": "****" if k in stack.no_echo else v}
                           for k, v in sorted(stack.parameters.items())],
            "Outputs": [{"OutputKey": k, "OutputValue": v} for k, v in sorted(stack.outputs.items())],
        }  # fmt: skip
        if stack.status_reason:
            answer["StackStatusReason"] = stack.status_reason
        return {"Stacks": [answer]}

    def describe_stack_events(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        stack = self._find(caller, params["StackName"])
        rows = []
        for number, event in reversed(list(enumerate(stack.events))):
            row = {"StackId": stack.stack_id, "StackName": stack.name, "EventId": f"{stack.name}-{number}",
                   "LogicalResourceId": event.logical_id, "ResourceType": event.resource_type,
                   "Timestamp": timestamp(event.timestamp), "ResourceStatus": event.status}  # fmt: skip
            if event.physical_id:
                row["PhysicalResourceId"] = event.physical_id
            if event.reason:
                row["ResourceStatusReason"] = event.reason
            rows.append(row)
        return _paged("StackEvents", rows, params)

    def describe_stack_resource_drifts(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        stack = self._find(caller, params["StackName"])
        raise ModelError("ValidationError", f"no drift detection has run on stack {stack.name} itself (StackSets "
                         "drift results are read with ListStackInstanceResourceDrifts)")  # fmt: skip


def _first_failure(stack: Stack) -> str:
    failed = next((e for e in stack.events if e.status.endswith("_FAILED") and e.reason), None)
    return f"{failed.logical_id}: {failed.reason}" if failed else ""


def _paged(key: str, rows: list[Any], params: dict[str, Any]) -> dict[str, Any]:
    start = int(params.get("NextToken") or 0)
    answer: dict[str, Any] = {key: rows[start : start + PAGE]}
    if start + PAGE < len(rows):
        answer["NextToken"] = str(start + PAGE)
    return answer
