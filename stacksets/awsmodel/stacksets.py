"""CloudFormation StackSets in the administrator's view: StackSets, stack instances and operations over simulated time.

Each rule names its source; docs/aws_model.md lists them all. The ones the orchestrator depends on most:
- Operations run asynchronously: RUNNING until their simulated end; with ManagedExecution active a second operation
  on the same StackSet is QUEUED behind the first, without it the call fails with OperationInProgressException
  (API reference, ManagedExecution: "StackSets performs non-conflicting operations concurrently and queues
  conflicting operations"; we queue every second operation, the stricter reading).
- Failure tolerance and max concurrency apply per Region; once a Region's failures exceed the tolerance its
  remaining instances are CANCELLED, later Regions of a SEQUENTIAL rollout are not started, and the operation FAILS
  (user guide "StackSet operation options": "Failure tolerance ... per Region").
- UpdateStackSet marks every instance OUTDATED before updating it (API reference UpdateStackSet).
- UpdateStackInstances only updates instances that exist: StackInstanceNotFoundException otherwise (API reference
  UpdateStackInstances: "You can only update stack instances in Amazon Web Services Regions and accounts where they
  already exist").
- CreateStackInstances retries OUTDATED instances (botocore model CreateStackInstances.OperationId: "Repeating this
  StackSet operation with a new operation ID retries all stack instances whose status is OUTDATED"); an instance
  whose stack rolled back is created afresh. Updating a ROLLBACK_COMPLETE stack is refused, as CloudFormation does.
- DescribeStackSet returns every template parameter, defaults included, NoEcho values as "****"
  (terraform-provider-aws TestAccCloudFormationStackSet_Parameters_default and the aws_cloudformation_stack_set docs).
- DeploymentTargets: Accounts or DeploymentTargets, not both; service-managed create and delete need
  OrganizationalUnitIds; AccountFilterType defaults to UNION, which CreateStackInstances refuses (botocore model
  DeploymentTargets); OUs expand recursively; the management account never gets an instance ("CloudFormation doesn't
  deploy stack instances to the organization management account", DeploymentTargets); a suspended account's
  instance is SKIPPED_SUSPENDED_ACCOUNT (StackInstanceComprehensiveStatus).
- CallAs: service-managed StackSets live in the management account; a delegated administrator must say
  CallAs=DELEGATED_ADMIN or the StackSet is not found (aws-cloudformation/rain #585), and an account that is not a
  delegated administrator is refused ("Account used is not a delegated administrator", terraform-provider-aws
  PR #37069).
"""

from __future__ import annotations

import heapq
import itertools
import math
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from stacksets.awsmodel.adapter import ModelError
from stacksets.awsmodel.templates import parsed_template, required_capability

if TYPE_CHECKING:
    from stacksets.awsmodel.model import World
    from stacksets.awsmodel.services import Caller

EPOCH = datetime(2026, 1, 1, tzinfo=timezone.utc)
IN_FLIGHT = ("RUNNING", "QUEUED", "STOPPING")
PAGE = 100


def timestamp(seconds: float) -> datetime:
    """Simulated seconds as the datetimes AWS returns."""
    return EPOCH + timedelta(seconds=seconds)


@dataclass
class StackInstance:
    account: str
    region: str
    unit: str | None
    status: str = "OUTDATED"
    detailed: str = "PENDING"
    reason: str = ""
    overrides: dict[str, str] = field(default_factory=dict)
    stack: Any = None  # engine.Stack
    drift: str = "NOT_CHECKED"
    drift_checked: float | None = None
    drifted_resources: list[dict[str, Any]] = field(default_factory=list)
    last_operation: str = ""


@dataclass
class Operation:
    id: str
    stackset: str
    action: str  # CREATE, UPDATE, DELETE, DETECT_DRIFT
    pairs: list[tuple[str, str]]
    preferences: dict[str, Any]
    created: float
    overrides: dict[str, str] | None = None
    retain: bool = False
    status: str = "QUEUED"
    started: float | None = None
    end: float | None = None
    reason: str = ""
    results: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)


@dataclass
class StackSet:
    name: str
    id: str
    owner: str
    region: str
    body: str
    parameters: dict[str, str]
    permission_model: str
    capabilities: list[str]
    managed_execution: bool
    auto_deployment: dict[str, Any]
    instances: dict[tuple[str, str], StackInstance] = field(default_factory=dict)
    operations: dict[str, Operation] = field(default_factory=dict)
    drift_status: str = "NOT_CHECKED"
    drift_checked: float | None = None
    declared: dict[str, Any] = field(default_factory=dict)  # the template's Parameters, read when it was set

    def busy(self) -> Operation | None:
        return next((op for op in self.operations.values() if op.status in IN_FLIGHT), None)


class StackSets:
    """The StackSets API of one modelled world. `advance()` moves every operation whose simulated end has come."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.sets: dict[tuple[str, str, str], StackSet] = {}  # (owner account, region, name)
        self._ends: list[tuple[float, int, str, tuple[str, str, str]]] = []
        self._counter = itertools.count()
        self._advancing = False

    # --- time ------------------------------------------------------------------------------------------------------

    def advance(self) -> None:
        if self._advancing:
            return  # a custom resource's own calls, made while an operation completes, must not complete others
        self._advancing = True
        try:
            self._advance()
        finally:
            self._advancing = False

    def _advance(self) -> None:
        now = self.world.now()
        while self._ends and self._ends[0][0] <= now:
            end, _, op_id, key = heapq.heappop(self._ends)
            stackset = self.sets.get(key)
            if stackset is None or op_id not in stackset.operations:
                continue
            operation = stackset.operations[op_id]
            self._complete(stackset, operation)
            queued = next((op for op in stackset.operations.values() if op.status == "QUEUED"), None)
            if queued is not None:
                self._begin(stackset, queued, end)

    def _begin(self, stackset: StackSet, operation: Operation, at: float) -> None:
        operation.status, operation.started = "RUNNING", at
        for pair in operation.pairs:
            instance = stackset.instances.get(pair)
            if instance is not None and operation.action != "DETECT_DRIFT":
                instance.detailed, instance.last_operation = "RUNNING", operation.id
        stuck = stackset.name in self.world.stuck
        operation.end = float("inf") if stuck else at + self._duration(stackset, operation)
        key = (stackset.owner, stackset.region, stackset.name)
        heapq.heappush(self._ends, (operation.end, next(self._counter), operation.id, key))

    def _duration(self, stackset: StackSet, operation: Operation) -> float:
        """Regions in parallel or one after another; within a Region, batches of MaxConcurrent instances."""
        per_instance = self.world.duration_for(stackset.name)
        if operation.action == "DETECT_DRIFT":
            per_instance = min(per_instance, 30.0)
        regions = _region_order(operation)
        times = []
        for region in regions:
            count = sum(1 for _, r in operation.pairs if r == region)
            times.append(math.ceil(count / self._batch(operation, count)) * per_instance)
        if not times:
            return 0.0
        parallel = operation.preferences.get("RegionConcurrencyType") == "PARALLEL"
        return max(times) if parallel else sum(times)

    # --- lookups ---------------------------------------------------------------------------------------------------

    def _owner(self, caller: Caller, params: dict[str, Any]) -> str:
        call_as = params.get("CallAs", "SELF")
        if call_as == "DELEGATED_ADMIN":
            if caller.account not in self.world.delegated_admins:
                raise ModelError("ValidationError", "Account used is not a delegated administrator")
            return self.world.organization.management_account
        return caller.account

    def get(self, caller: Caller, params: dict[str, Any]) -> StackSet:
        self.advance()
        owner = self._owner(caller, params)
        found = self.sets.get((owner, caller.region, params["StackSetName"]))
        if found is None or (params.get("CallAs") == "DELEGATED_ADMIN" and found.permission_model != "SERVICE_MANAGED"):
            raise ModelError("StackSetNotFoundException", f"StackSet {params['StackSetName']} not found", 404)
        return found

    # --- StackSets -------------------------------------------------------------------------------------------------

    def create_stack_set(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        owner = self._owner(caller, params)
        model = params.get("PermissionModel", "SELF_MANAGED")
        if params.get("CallAs") == "DELEGATED_ADMIN" and model != "SERVICE_MANAGED":
            # botocore model CreateStackSet.CallAs: "Valid only if the permissions model is SERVICE_MANAGED"
            raise ModelError("ValidationError", "CallAs DELEGATED_ADMIN is valid only for SERVICE_MANAGED StackSets")
        if model == "SERVICE_MANAGED" and "AutoDeployment" not in params:
            # botocore model AutoDeployment: "Required if the permissions model is SERVICE_MANAGED"
            raise ModelError("ValidationError", "AutoDeployment is required for SERVICE_MANAGED StackSets")
        key = (owner, caller.region, params["StackSetName"])
        if key in self.sets:
            raise ModelError("NameAlreadyExistsException", f"StackSet {params['StackSetName']} already exists", 409)
        live = sum(1 for (o, _, _) in self.sets if o == owner)
        quota = self.world.limits.stack_sets_per_administrator
        if live >= quota:
            raise ModelError("LimitExceededException", f"Stack sets per administrator account limit of {quota} "
                             "reached: request a quota increase (Service Quotas, AWS CloudFormation)")  # fmt: skip
        body = self._body(caller, params)
        parameters = self._parameters(body, params.get("Parameters", []), {})
        self._check_capabilities(body, params.get("Capabilities", []))
        stackset = StackSet(params["StackSetName"], f"{params['StackSetName']}:{uuid.uuid4()}", owner, caller.region,
                            body, parameters, model, list(params.get("Capabilities", [])),
                            bool(params.get("ManagedExecution", {}).get("Active")),
                            dict(params.get("AutoDeployment", {})))  # fmt: skip
        stackset.declared = dict(parsed_template(body).get("Parameters") or {})
        self.sets[key] = stackset
        return {"StackSetId": stackset.id}

    def _body(self, caller: Caller, params: dict[str, Any]) -> str:
        if "TemplateBody" in params:
            body = params["TemplateBody"]
        elif "TemplateURL" in params:
            body = self.world.s3.read_template_url(caller, params["TemplateURL"])
        else:
            raise ModelError("ValidationError", "Either TemplateBody or TemplateURL must be specified")
        try:
            parsed_template(body)
        except ValueError as error:
            raise ModelError("ValidationError", f"Template format error: {error}") from None
        return body

    def _parameters(self, body: str, given: list[dict[str, Any]], previous: dict[str, str]) -> dict[str, str]:
        declared = parsed_template(body).get("Parameters") or {}
        values: dict[str, str] = {}
        for parameter in given:
            key = parameter["ParameterKey"]
            if key not in declared:
                raise ModelError("ValidationError", f"Parameters: [{key}] do not exist in the template")
            if parameter.get("UsePreviousValue"):
                if key not in previous:
                    raise ModelError("ValidationError", f"Parameters: [{key}] has no previous value to use")
                values[key] = previous[key]
            else:
                values[key] = parameter.get("ParameterValue", "")
        return values

    def _check_capabilities(self, body: str, capabilities: list[str]) -> None:
        needed = required_capability(body)
        if needed == "CAPABILITY_NAMED_IAM" and needed not in capabilities:
            raise ModelError("InsufficientCapabilitiesException", f"Requires capabilities : [{needed}]")
        if needed == "CAPABILITY_IAM" and not {"CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"} & set(capabilities):
            raise ModelError("InsufficientCapabilitiesException", f"Requires capabilities : [{needed}]")

    def describe_stack_set(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        s = self.get(caller, params)
        declared = s.declared
        parameters = []
        for key in sorted(set(declared) | set(s.parameters)):
            value = s.parameters.get(key, str(declared.get(key, {}).get("Default", "")))
            if str(declared.get(key, {}).get("NoEcho", "")).lower() == "true":
                value = "****"
            parameters.append({"ParameterKey": key, "ParameterValue": value})
        answer: dict[str, Any] = {
            "StackSetName": s.name, "StackSetId": s.id, "Status": "ACTIVE", "TemplateBody": s.body,
            "Parameters": parameters, "Capabilities": s.capabilities, "PermissionModel": s.permission_model,
            "StackSetARN": f"arn:aws:cloudformation:{s.region}:{s.owner}:stackset/{s.id}",
            "ManagedExecution": {"Active": s.managed_execution},
            "StackSetDriftDetectionDetails": {"DriftStatus": s.drift_status},
            "Regions": sorted({r for _, r in s.instances}),
        }  # fmt: skip
        if s.permission_model == "SERVICE_MANAGED":
            answer["AutoDeployment"] = s.auto_deployment
            answer["OrganizationalUnitIds"] = sorted({i.unit for i in s.instances.values() if i.unit})
        if s.drift_checked is not None:
            answer["StackSetDriftDetectionDetails"]["LastDriftCheckTimestamp"] = timestamp(s.drift_checked)
        return {"StackSet": answer}

    def update_stack_set(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        s = self.get(caller, params)
        if params.get("DeploymentTargets") or params.get("Accounts"):
            raise ModelError("ValidationError", "the model supports UpdateStackSet of every instance only "
                             "(the orchestrator never targets it)")  # fmt: skip
        if "ManagedExecution" in params and bool(params["ManagedExecution"].get("Active")) != s.managed_execution:
            # terraform-provider-aws #35031: ManagedExecution cannot change together with template or parameters
            raise ModelError("InvalidOperationException", "Cannot update ManagedExecution while updating StackSet "
                             "Template or Parameters")  # fmt: skip
        if params.get("UsePreviousTemplate"):
            body = s.body
        else:
            body = self._body(caller, params)
        parameters = self._parameters(body, params.get("Parameters", []), s.parameters)
        self._check_capabilities(body, params.get("Capabilities", []))
        operation = self._start(s, params, "UPDATE", sorted(s.instances), overrides=None)
        s.body, s.parameters, s.capabilities = body, parameters, list(params.get("Capabilities", []))
        s.declared = dict(parsed_template(body).get("Parameters") or {})
        for instance in s.instances.values():
            if instance.detailed != "INOPERABLE":
                instance.status = "OUTDATED"
        return {"OperationId": operation.id}

    def delete_stack_set(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        s = self.get(caller, params)
        if s.busy() is not None:
            raise ModelError("OperationInProgressException", f"Another Operation on StackSet {s.name} is in progress",
                             409)  # fmt: skip
        if s.instances:
            raise ModelError("StackSetNotEmptyException", f"StackSet {s.name} is not empty", 409)
        del self.sets[(s.owner, s.region, s.name)]
        return {}

    # --- stack instances -------------------------------------------------------------------------------------------

    def _targets(self, s: StackSet, params: dict[str, Any], action: str) -> list[tuple[str, str, str | None]]:
        """(account, region, OU) an instance operation names, with the DeploymentTargets rules of the API."""
        regions = params["Regions"]
        accounts, targets = params.get("Accounts"), params.get("DeploymentTargets")
        if accounts and targets:
            raise ModelError("ValidationError", "You can specify Accounts or DeploymentTargets, but not both")
        if s.permission_model != "SERVICE_MANAGED":
            if targets:
                raise ModelError("ValidationError", "StackSets with SELF_MANAGED permission model can only have "
                                 "accounts as target")  # fmt: skip
            if not accounts:
                raise ModelError("ValidationError", "Accounts must be specified")
            return [(a, r, None) for r in regions for a in accounts]
        if accounts or not targets:
            raise ModelError("ValidationError", "StackSets with SERVICE_MANAGED permission model can only have "
                             "OrganizationalUnit as target")  # fmt: skip
        units = list(targets.get("OrganizationalUnitIds") or [])
        named = list(targets.get("Accounts") or [])
        if action in ("CREATE", "DELETE") and not units:
            raise ModelError("ValidationError", "OrganizationalUnitIds are required for create and delete operations")
        if units and named and "AccountFilterType" not in targets and action == "CREATE":
            raise ModelError("ValidationError", "AccountFilterType is required when both OrganizationalUnitIds and "
                             "Accounts are specified")  # fmt: skip
        kind = targets.get("AccountFilterType", "UNION" if named else "NONE")
        if kind == "UNION" and action == "CREATE":
            raise ModelError("ValidationError", "AccountFilterType UNION is not supported for CreateStackInstances")
        for unit in units:
            if not self.world.organization.parent_exists(unit):
                raise ModelError("ValidationError", f"OrganizationalUnit {unit} does not exist")
        chosen = self._expand(units)
        if action != "CREATE":
            # An existing instance is also found by the OU it was created for (ListStackInstances'
            # OrganizationalUnitId) after its account moved elsewhere. Unconfirmed: AWS may match by where the account
            # sits now only, which would make such an instance unreachable by OU.
            chosen.update({i.account: i.unit for i in s.instances.values() if i.unit in units})
        if kind == "INTERSECTION":
            chosen = {a: u for a, u in chosen.items() if a in named}
        elif kind == "DIFFERENCE":
            chosen = {a: u for a, u in chosen.items() if a not in named}
        elif kind == "UNION":
            chosen = {**{a: self.world.organization.top_unit_of(a, units) for a in named}, **chosen}
        management = self.world.organization.management_account
        return [(a, r, u) for r in regions for a, u in sorted(chosen.items()) if a != management]

    def _expand(self, units: list[str]) -> dict[str, str | None]:
        chosen: dict[str, str | None] = {}
        for unit in units:
            for account in self.world.organization.accounts_under(unit):
                chosen.setdefault(account.id, unit)
        return chosen

    def create_stack_instances(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        s = self.get(caller, params)
        targets = self._targets(s, params, "CREATE")
        overrides = self._overrides(s, params)
        for account, region, unit in targets:
            instance = s.instances.get((account, region))
            if instance is None:
                s.instances[(account, region)] = StackInstance(account, region, unit, overrides=dict(overrides or {}))
        operation = self._start(s, params, "CREATE", [(a, r) for a, r, _ in targets], overrides)
        return {"OperationId": operation.id}

    def update_stack_instances(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        s = self.get(caller, params)
        targets = self._targets(s, params, "UPDATE")
        missing = [(a, r) for a, r, _ in targets if (a, r) not in s.instances]
        if missing:
            raise ModelError("StackInstanceNotFoundException", f"Stack instance {missing[0][0]}/{missing[0][1]} of "
                             f"StackSet {s.name} not found", 404)  # fmt: skip
        operation = self._start(s, params, "UPDATE", [(a, r) for a, r, _ in targets], self._overrides(s, params))
        return {"OperationId": operation.id}

    def delete_stack_instances(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        s = self.get(caller, params)
        targets = [(a, r) for a, r, _ in self._targets(s, params, "DELETE") if (a, r) in s.instances]
        operation = self._start(s, params, "DELETE", targets, None, retain=bool(params["RetainStacks"]))
        return {"OperationId": operation.id}

    def _overrides(self, s: StackSet, params: dict[str, Any]) -> dict[str, str] | None:
        if "ParameterOverrides" not in params:
            return None
        values = {}
        for parameter in params["ParameterOverrides"]:
            key = parameter["ParameterKey"]
            if key not in s.declared:
                # API reference UpdateStackInstances.ParameterOverrides: "You can only override the parameter
                # values that are specified in the StackSet" (those of its template, defaulted ones included)
                raise ModelError("ValidationError", f"ParameterOverrides: [{key}] is not a parameter of StackSet "
                                 f"{s.name}")  # fmt: skip
            values[key] = parameter.get("ParameterValue", "")
        return values

    def detect_stack_set_drift(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        s = self.get(caller, params)
        operation = self._start(s, params, "DETECT_DRIFT", sorted(s.instances), None)
        return {"OperationId": operation.id}

    def _start(self, s: StackSet, params: dict[str, Any], action: str, pairs: list[tuple[str, str]],
               overrides: dict[str, str] | None, retain: bool = False) -> Operation:  # fmt: skip
        op_id = params.get("OperationId") or str(uuid.uuid4())
        if any(op_id in other.operations for other in self.sets.values()):
            raise ModelError("OperationIdAlreadyExistsException", f"The operation id {op_id} already exists", 409)
        preferences = dict(params.get("OperationPreferences") or {})
        _check_preferences(preferences)
        busy = s.busy()
        if busy is not None and not s.managed_execution:
            raise ModelError("OperationInProgressException", f"Another Operation on StackSet {s.name} is in progress",
                             409)  # fmt: skip
        operation = Operation(op_id, s.name, action, list(pairs), preferences, self.world.now(), overrides, retain)
        s.operations[op_id] = operation
        for pair in pairs:
            instance = s.instances.get(pair)
            if instance is not None and action in ("CREATE", "UPDATE"):
                instance.status, instance.detailed = "OUTDATED", "PENDING"
        if busy is None:
            self._begin(s, operation, self.world.now())
        return operation

    def describe_stack_set_operation(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        s = self.get(caller, params)
        operation = s.operations.get(params["OperationId"])
        if operation is None:
            raise ModelError("OperationNotFoundException", f"Operation {params['OperationId']} not found", 404)
        answer: dict[str, Any] = {"OperationId": operation.id, "StackSetId": s.id, "Action": operation.action,
                                  "Status": operation.status, "OperationPreferences": operation.preferences,
                                  "RetainStacks": operation.retain,
                                  "CreationTimestamp": timestamp(operation.created)}  # fmt: skip
        if operation.status not in IN_FLIGHT and operation.end is not None:
            answer["EndTimestamp"] = timestamp(operation.end)
        if operation.reason:
            answer["StatusReason"] = operation.reason
        failed = sum(1 for status, _ in operation.results.values() if status == "FAILED")
        if operation.status not in IN_FLIGHT:
            answer["StatusDetails"] = {"FailedStackInstancesCount": failed}
        return {"StackSetOperation": answer}

    def list_stack_sets(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        """The caller's StackSets in its Region; with CallAs DELEGATED_ADMIN the organization's service-managed ones
        (botocore model ListStackSets.CallAs). Deleted StackSets are gone from the model, so Status DELETED lists
        none."""
        self.advance()
        owner = self._owner(caller, params)
        wanted = params.get("Status")
        rows = [{"StackSetName": s.name, "StackSetId": s.id, "Status": "ACTIVE", "PermissionModel": s.permission_model,
                 "DriftStatus": s.drift_status, "ManagedExecution": {"Active": s.managed_execution}}
                for (o, region, _), s in sorted(self.sets.items())
                if o == owner and region == caller.region and wanted in (None, "ACTIVE")
                and (params.get("CallAs") != "DELEGATED_ADMIN" or s.permission_model == "SERVICE_MANAGED")]  # fmt: skip
        return _paged("Summaries", rows, params)

    def list_stack_set_operation_results(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        s = self.get(caller, params)
        operation = s.operations.get(params["OperationId"])
        if operation is None:
            raise ModelError("OperationNotFoundException", f"Operation {params['OperationId']} not found", 404)
        summaries = []
        for (account, region), (status, reason) in sorted(operation.results.items()):
            summary = {"Account": account, "Region": region, "Status": status,
                       "AccountGateResult": {"Status": "SKIPPED", "StatusReason": "no account gate function"}}
            if reason:
                summary["StatusReason"] = reason
            summaries.append(summary)
        return _paged("Summaries", summaries, params)

    def list_stack_instances(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        s = self.get(caller, params)
        rows = [self._summary(s, i) for _, i in sorted(s.instances.items())
                if params.get("StackInstanceAccount") in (None, i.account)
                and params.get("StackInstanceRegion") in (None, i.region)]  # fmt: skip
        return _paged("Summaries", rows, params)

    def describe_stack_instance(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        s = self.get(caller, params)
        instance = s.instances.get((params["StackInstanceAccount"], params["StackInstanceRegion"]))
        if instance is None:
            raise ModelError("StackInstanceNotFoundException", "Stack instance not found", 404)
        answer = self._summary(s, instance)
        answer["ParameterOverrides"] = [{"ParameterKey": k, "ParameterValue": v}
                                        for k, v in sorted(instance.overrides.items())]  # fmt: skip
        return {"StackInstance": answer}

    def _summary(self, s: StackSet, instance: StackInstance) -> dict[str, Any]:
        row: dict[str, Any] = {"StackSetId": s.id, "Account": instance.account, "Region": instance.region,
                               "Status": instance.status, "StackInstanceStatus": {"DetailedStatus": instance.detailed},
                               "DriftStatus": instance.drift}  # fmt: skip
        if instance.stack is not None:
            row["StackId"] = instance.stack.stack_id
        if instance.reason:
            row["StatusReason"] = instance.reason
        if instance.unit:
            row["OrganizationalUnitId"] = instance.unit
        if instance.last_operation:
            row["LastOperationId"] = instance.last_operation
        if instance.drift_checked is not None:
            row["LastDriftCheckTimestamp"] = timestamp(instance.drift_checked)
        return row

    def list_stack_instance_resource_drifts(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        s = self.get(caller, params)
        instance = s.instances.get((params["StackInstanceAccount"], params["StackInstanceRegion"]))
        if instance is None:
            raise ModelError("StackInstanceNotFoundException", "Stack instance not found", 404)
        operation = s.operations.get(params["OperationId"])
        if operation is None or operation.action != "DETECT_DRIFT":
            raise ModelError("OperationNotFoundException", f"Drift detection {params['OperationId']} not found", 404)
        wanted = params.get("StackInstanceResourceDriftStatuses")
        rows = [dict(d, Timestamp=timestamp(instance.drift_checked or 0.0)) for d in instance.drifted_resources
                if wanted is None or d["StackResourceDriftStatus"] in wanted]  # fmt: skip
        return _paged("Summaries", rows, params)

    # --- completing operations -------------------------------------------------------------------------------------

    def _complete(self, s: StackSet, operation: Operation) -> None:
        if operation.action == "DETECT_DRIFT":
            self._detect_drift(s, operation)
            return
        tolerance_exceeded = False
        parallel = operation.preferences.get("RegionConcurrencyType") == "PARALLEL"
        for region in _region_order(operation):
            pairs = [pair for pair in operation.pairs if pair[1] == region]
            if tolerance_exceeded and not parallel:
                for pair in pairs:
                    self._cancel(s, operation, pair)
                continue
            if self._run_region(s, operation, pairs):
                tolerance_exceeded = True
        operation.status = "FAILED" if tolerance_exceeded else "SUCCEEDED"
        if tolerance_exceeded:
            operation.reason = "The Operation failed because the failure tolerance was exceeded in a Region"

    def _batch(self, operation: Operation, count: int) -> int:
        """How many of a Region's instances run at once: the preferences, within "the maximum speed of deployment"
        of 100 concurrent stack instances per StackSet (user guide, StackSets concepts; the scenario may change it)."""
        return min(_max_concurrent(operation.preferences, count), self.world.limits.stack_instances_per_operation)

    def _run_region(self, s: StackSet, operation: Operation, pairs: list[tuple[str, str]]) -> bool:
        """True when this Region's failures exceeded the tolerance (its remaining instances are then CANCELLED)."""
        batch = self._batch(operation, len(pairs))
        tolerance = _tolerance(operation.preferences, len(pairs))
        failures = 0
        for start in range(0, len(pairs), batch):
            if failures > tolerance:
                for pair in pairs[start:]:
                    self._cancel(s, operation, pair)
                return True
            for pair in pairs[start : start + batch]:
                if not self._run_instance(s, operation, pair):
                    failures += 1
        return failures > tolerance

    def _cancel(self, s: StackSet, operation: Operation, pair: tuple[str, str]) -> None:
        instance = s.instances.get(pair)
        if instance is not None:
            instance.detailed, instance.reason = "CANCELLED", "Cancelled since failure tolerance has exceeded"
        operation.results[pair] = ("CANCELLED", "Cancelled since failure tolerance has exceeded")

    def _run_instance(self, s: StackSet, operation: Operation, pair: tuple[str, str]) -> bool:
        instance = s.instances[pair]
        instance.last_operation = operation.id
        account = self.world.organization.accounts.get(pair[0])
        if account is not None and not account.active:
            instance.status, instance.detailed = "OUTDATED", "SKIPPED_SUSPENDED_ACCOUNT"
            instance.reason = f"Account {pair[0]} is {account.state.lower().replace('_', ' ')}"
            operation.results[pair] = ("CANCELLED", instance.reason)
            return True  # skipped, not failed: it does not count against the failure tolerance
        if operation.action == "DELETE":
            return self._delete_instance(s, operation, instance)
        if instance.status == "INOPERABLE":
            # botocore model StackInstanceStatus INOPERABLE: "excluded from further UpdateStackSet operations"
            operation.results[pair] = ("CANCELLED", "the stack instance is INOPERABLE")
            return True
        if operation.overrides is not None:
            instance.overrides = dict(operation.overrides)
        ok, reason = self.world.stacks.deploy(s, instance, operation.action)
        if ok:
            instance.status, instance.detailed, instance.reason = "CURRENT", "SUCCEEDED", ""
            operation.results[pair] = ("SUCCEEDED", "")
        else:
            instance.status, instance.detailed, instance.reason = "OUTDATED", "FAILED", reason
            operation.results[pair] = ("FAILED", reason)
        return ok

    def _delete_instance(self, s: StackSet, operation: Operation, instance: StackInstance) -> bool:
        pair = (instance.account, instance.region)
        if not operation.retain and instance.stack is not None:
            ok, reason = self.world.stacks.delete(instance)
            if not ok:
                # botocore model StackInstanceStatus INOPERABLE: "A DeleteStackInstances operation has failed and
                # left the stack in an unstable state"
                instance.status, instance.detailed, instance.reason = "INOPERABLE", "INOPERABLE", reason
                operation.results[pair] = ("FAILED", reason)
                return False
        del s.instances[pair]
        operation.results[pair] = ("SUCCEEDED", "")
        return True

    def _detect_drift(self, s: StackSet, operation: Operation) -> None:
        drifted_any = False
        for pair in operation.pairs:
            instance = s.instances.get(pair)
            if instance is None:
                continue
            instance.drifted_resources = self.world.drifted_resources(s.name, *pair, instance.stack)
            instance.drift = "DRIFTED" if instance.drifted_resources else "IN_SYNC"
            instance.drift_checked = operation.end
            drifted_any |= bool(instance.drifted_resources)
            operation.results[pair] = ("SUCCEEDED", "")
        s.drift_status, s.drift_checked = ("DRIFTED" if drifted_any else "IN_SYNC"), operation.end
        operation.status = "SUCCEEDED"


def _region_order(operation: Operation) -> list[str]:
    regions = sorted({r for _, r in operation.pairs})
    order = [r for r in operation.preferences.get("RegionOrder", []) if r in regions]
    return order + [r for r in regions if r not in order]


def _max_concurrent(preferences: dict[str, Any], count: int) -> int:
    """Per Region; a percentage rounds down, to at least 1 (botocore model StackSetOperationPreferences). Under
    STRICT_FAILURE_TOLERANCE the concurrency is at most FailureToleranceCount + 1 (botocore model ConcurrencyMode)."""
    if "MaxConcurrentCount" in preferences:
        wanted = max(1, int(preferences["MaxConcurrentCount"]))
    elif "MaxConcurrentPercentage" in preferences:
        wanted = max(1, count * int(preferences["MaxConcurrentPercentage"]) // 100)
    else:
        wanted = 1
    if preferences.get("ConcurrencyMode", "STRICT_FAILURE_TOLERANCE") == "STRICT_FAILURE_TOLERANCE":
        wanted = min(wanted, _tolerance(preferences, count) + 1)
    return wanted


def _tolerance(preferences: dict[str, Any], count: int) -> int:
    """Per Region; a percentage rounds down (user guide "StackSet operation options")."""
    if "FailureToleranceCount" in preferences:
        return int(preferences["FailureToleranceCount"])
    if "FailureTolerancePercentage" in preferences:
        return count * int(preferences["FailureTolerancePercentage"]) // 100
    return 0


def _check_preferences(preferences: dict[str, Any]) -> None:
    """botocore model StackSetOperationPreferences: Count and Percentage exclude each other."""
    for kind in ("MaxConcurrent", "FailureTolerance"):
        if f"{kind}Count" in preferences and f"{kind}Percentage" in preferences:
            raise ModelError("ValidationError", f"specify {kind}Count or {kind}Percentage, not both")


def _paged(key: str, rows: list[Any], params: dict[str, Any]) -> dict[str, Any]:
    size = min(params.get("MaxResults", PAGE), PAGE)
    start = int(params.get("NextToken") or 0)
    answer: dict[str, Any] = {key: rows[start : start + size]}
    if start + size < len(rows):
        answer["NextToken"] = str(start + size)
    return answer
