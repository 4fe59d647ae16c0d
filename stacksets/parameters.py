"""Parameter values of a StackSet: literals, or outputs of the StackSets it depends on (OutputRef)."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from stacksets.aws import AwsError, call_as_value
from stacksets.calls import call
from stacksets.config import CallAs
from stacksets.instances import InstanceViews
from stacksets.plan import Node, OutputRef, ParameterValue, Plan
from stacksets.results import NodeFailed
from stacksets.run import Run

Overrides = dict[tuple[str, str], dict[str, str]]


class ParameterResolver:
    def __init__(self, run: Run, views: InstanceViews) -> None:
        self.run = run
        self.views = views

    def parameters(self, node: Node, strict: bool) -> tuple[dict[str, str], Overrides]:
        """StackSet-level parameters and per-target overrides. ParameterOverrides may only name keys the StackSet
        has, so a key that only exists as an override also gets a StackSet-level value (the first target's).
        Not strict (a plan): outputs not known yet read "(from <ref>)"."""
        params = {key: self.resolve(value, strict, node.call_as) for key, value in node.parameters}
        overrides: Overrides = {}
        for override in sorted(node.overrides, key=lambda o: (o.account, o.region)):
            values = {key: self.resolve(value, strict, node.call_as) for key, value in override.parameters}
            overrides[(override.account, override.region)] = values
            for key, value in values.items():
                params.setdefault(key, value)
        return params, overrides

    def resolve(self, value: ParameterValue, strict: bool, call_as: CallAs | None = None) -> str:
        if not isinstance(value, OutputRef):
            return value
        key = (value.stackset, value.account, value.region)
        with self.run.lock:
            known = key in self.run.outputs
            outputs = self.run.outputs.get(key, {})
        if not known:
            outputs = self._try_read_outputs(value, call_as) or {}
        if value.output in outputs:
            return outputs[value.output]
        if strict:
            raise NodeFailed(f"output {value.output} of {value.stackset} in {value.account}/{value.region} not found "
                             "(is it in the template's Outputs?)")  # fmt: skip
        return f"(from {value})"

    def _try_read_outputs(self, ref: OutputRef, call_as: CallAs | None) -> dict[str, str] | None:
        """For plan: outputs of a producer deployed by an earlier run, or None when it is not there yet."""
        cfn = self.run.clients.client("cloudformation")
        try:
            found = call(self.run, cfn, "list_stack_instances", StackSetName=ref.stackset,
                         StackInstanceAccount=ref.account, StackInstanceRegion=ref.region,
                         **call_as_value(call_as))["Summaries"]  # fmt: skip
            outputs = self.views.outputs(found[0]) if found else None
        except (AwsError, ClientError):
            return None
        if outputs is not None:
            with self.run.lock:
                self.run.outputs[(ref.stackset, ref.account, ref.region)] = outputs
        return outputs

    def collect_outputs(self, node: Node, plan: Plan, instances: list[dict[str, Any]]) -> None:
        """Outputs of this node that dependents consume (only those pairs: fewer reader calls)."""
        pairs = sorted({(ref.account, ref.region) for other in plan.nodes.values()
                        for ref in other.output_refs() if ref.stackset == node.name})  # fmt: skip
        by_pair = {(i["Account"], i["Region"]): i for i in instances}
        for account, region in pairs:
            outputs = self.views.outputs(by_pair[(account, region)]) if (account, region) in by_pair else None
            if outputs is None:
                raise NodeFailed(f"no instance stack of {node.name} in {account}/{region} to read outputs from")
            with self.run.lock:
                self.run.outputs[(node.name, account, region)] = outputs


def api_parameters(values: dict[str, str]) -> list[dict[str, str]]:
    return [{"ParameterKey": k, "ParameterValue": v} for k, v in sorted(values.items())]
