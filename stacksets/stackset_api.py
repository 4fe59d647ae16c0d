"""The StackSets calls of one StackSet, typed, with its name and CallAs applied once instead of at every call site."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from stacksets.aws import call_as_value, explain
from stacksets.calls import call, error_code, pages
from stacksets.plan import Node
from stacksets.run import Run


class StackSetApi:
    def __init__(self, run: Run, node: Node) -> None:
        self.run = run
        self.name = node.name
        self._call_as = call_as_value(node.call_as)

    def _call(self, api: str, **kwargs: Any) -> Any:
        return call(self.run, self.run.clients.client("cloudformation"), api, StackSetName=self.name,
                    **self._call_as, **kwargs)  # fmt: skip

    def describe(self) -> dict[str, Any] | None:
        """The live StackSet, or None when it does not exist."""
        try:
            return self._call("describe_stack_set")["StackSet"]
        except ClientError as error:
            if error_code(error) == "StackSetNotFoundException":
                return None
            raise explain(error) from None

    def instances(self) -> list[dict[str, Any]]:
        cfn = self.run.clients.client("cloudformation")
        return pages(self.run, cfn, "list_stack_instances", "Summaries", StackSetName=self.name, **self._call_as)

    def instance_overrides(self, account: str, region: str) -> dict[str, str]:
        found = self._call("describe_stack_instance", StackInstanceAccount=account,
                           StackInstanceRegion=region)["StackInstance"]  # fmt: skip
        return {p["ParameterKey"]: p.get("ParameterValue", "") for p in found.get("ParameterOverrides", [])}

    def create(self, **kwargs: Any) -> None:
        self._call("create_stack_set", **kwargs)

    def start_operation(self, api: str, operation_id: str, **kwargs: Any) -> dict[str, Any]:
        """Start update_stack_set, *_stack_instances or detect_stack_set_drift under a client-supplied id."""
        return self._call(api, OperationId=operation_id, **kwargs)

    def describe_operation(self, operation_id: str) -> dict[str, Any]:
        return self._call("describe_stack_set_operation", OperationId=operation_id)["StackSetOperation"]

    def delete(self) -> None:
        self._call("delete_stack_set")

    def resource_drifts(self, account: str, region: str, operation_id: str) -> list[str]:
        """"LogicalId (Type): MODIFIED" for each drifted resource the drift detection `operation_id` found in the
        instance. Read from the administrator account (API reference ListStackInstanceResourceDrifts): the target
        account's stack API would need rights the reader role does not have."""
        drifts = pages(self.run, self.run.clients.client("cloudformation"), "list_stack_instance_resource_drifts",
                       "Summaries", StackSetName=self.name, StackInstanceAccount=account, StackInstanceRegion=region,
                       OperationId=operation_id, StackInstanceResourceDriftStatuses=["MODIFIED", "DELETED"],
                       **self._call_as)  # fmt: skip
        return [f"{d['LogicalResourceId']} ({d.get('ResourceType', '')}): {d['StackResourceDriftStatus']}"
                for d in drifts]  # fmt: skip
