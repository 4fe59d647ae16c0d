"""Deploy one StackSet: create or update it, create/update/delete its instances, check every instance, and read
the outputs its dependents consume."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from botocore.exceptions import ClientError

from stacksets.actions.context import Context, Steps
from stacksets.actions.diff import diff_stackset
from stacksets.aws import explain
from stacksets.calls import error_code
from stacksets.config import PermissionModel
from stacksets.instances import instance_counts, undelivered_mail
from stacksets.naming import DELETION_PROTECTION_PARAMETER, WELCOME_MAIL_UNDELIVERED
from stacksets.parameters import api_parameters
from stacksets.plan import Node, Plan, declared_outputs
from stacksets.results import NodeFailed, State
from stacksets.targets import Overrides, Pair, call_groups, recorded_units, target_arguments


def deploy_stackset(ctx: Context, node: Node, plan: Plan) -> Steps[State]:
    api, operations = ctx.api(node), ctx.operations
    reattached = yield from operations.reattach(api)
    live = api.describe()
    instances = api.instances() if live is not None else []
    change = diff_stackset(ctx, node, strict=True, live=live, instances=instances)
    for warning in change.warnings:
        ctx.run.emit(node.name, State.RUNNING, message=warning)
    params, overrides = ctx.parameters.parameters(node, strict=True)
    # What the stacks said about welcome e-mail before: an output this deploy leaves as it was is not news.
    mailing = change.changed and WELCOME_MAIL_UNDELIVERED in declared_outputs(node.template_body)
    mail_before = ctx.views.mail_outputs(instances, [(i["Account"], i["Region"]) for i in instances]) if mailing \
        else {}  # fmt: skip
    preferences = {"OperationPreferences": node.operation_preferences}
    if live is None:
        create_stack_set(ctx, node, params)
    elif change.template_changed or change.parameters_changed:
        narrowed = yield from narrow_stale_overrides(ctx, node, live, instances, overrides)
        change = replace(change, update=tuple(p for p in change.update if p not in narrowed))
        yield from operations.perform(api, "update_stack_set", Parameters=api_parameters(params),
                                      Capabilities=list(node.capabilities), **preferences,
                                      **ctx.staging.template_argument(node))  # fmt: skip
    creating = [*change.create, *change.retry]
    for regions, accounts, values in call_groups(creating, overrides):
        values = {**values, **unprotected_while_created(node)}
        extra = {"ParameterOverrides": api_parameters(values)} if values else {}
        yield from operations.perform(api, "create_stack_instances", Regions=regions, **preferences,
                                      **target_arguments(node, accounts), **extra)  # fmt: skip
    if creating and unprotected_while_created(node):
        yield from protect_created(ctx, node, creating, overrides)
    for regions, accounts, values in call_groups(change.update, overrides):
        yield from operations.perform(api, "update_stack_instances", Regions=regions,
                                      ParameterOverrides=api_parameters(values), **preferences,
                                      **target_arguments(node, accounts))  # fmt: skip
    units = recorded_units(instances)
    for regions, accounts, _ in call_groups(change.delete, {}):
        yield from operations.perform(api, "delete_stack_instances", Regions=regions, RetainStacks=False,
                                      **preferences, **target_arguments(node, accounts, units))  # fmt: skip
    desired = [p for p in [*change.create, *change.retry, *change.update] if p not in change.delete]
    desired += [p for p in ctx.desired_pairs(node)[0] if p not in desired]
    # without a change the instance list read for the diff is still current: one call less per StackSet
    current = api.instances() if change.changed else instances
    ctx.run.emit(node.name, State.RUNNING, message="checking instances", instances=instance_counts(current))
    failures = ctx.views.failures(api, desired, current)
    if failures:
        raise NodeFailed(f"{len(failures)} stack instance(s) failed", failures)
    ctx.parameters.collect_outputs(node, plan, current)
    if mailing:
        for pair, outputs in sorted(ctx.views.mail_outputs(current, desired).items()):
            if outputs[WELCOME_MAIL_UNDELIVERED] != mail_before.get(pair, {}).get(WELCOME_MAIL_UNDELIVERED):
                mail = undelivered_mail(pair, outputs)
                ctx.run.report.results[node.name].mail += [mail] if mail else []
    return State.SUCCEEDED if change.changed or reattached else State.UNCHANGED


def unprotected_while_created(node: Node) -> dict[str, str]:
    """A stack whose first create fails rolls back by deleting what it made, and a load balancer with deletion
    protection refuses (ROLLBACK_FAILED: the retry cannot even start). So new instances are created with the
    protection off, as an override that protect_created() removes once they stand."""
    return {DELETION_PROTECTION_PARAMETER: "false"} if DELETION_PROTECTION_PARAMETER in dict(node.declared) else {}


def protect_created(ctx: Context, node: Node, created: list[Pair], overrides: Overrides) -> Steps[None]:
    """The created instances that succeeded get their planned overrides back (without the protection override, so
    the StackSet's value applies: on). Failed ones keep it off for their retry."""
    api = ctx.api(node)
    current = api.instances()
    done = [(i["Account"], i["Region"]) for i in current if i.get("Status") == "CURRENT"]
    standing = [pair for pair in created if pair in done]
    if not standing:
        return
    ctx.run.emit(node.name, State.RUNNING, "update_stack_instances", "switching on the load balancer's deletion "
                 "protection")  # fmt: skip
    for regions, accounts, values in call_groups(standing, overrides):
        yield from ctx.operations.perform(api, "update_stack_instances", Regions=regions,
                                          ParameterOverrides=api_parameters(values),
                                          OperationPreferences=node.operation_preferences,
                                          **target_arguments(node, accounts, recorded_units(current)))  # fmt: skip


def narrow_stale_overrides(ctx: Context, node: Node, live: dict[str, Any], instances: list[dict[str, Any]],
                           overrides: Overrides) -> Steps[list[Pair]]:  # fmt: skip
    """Instances whose overrides name a parameter the new template drops get their new overrides before the
    template changes: an instance stack updated with a parameter its template does not declare fails ("Parameters:
    [X] do not exist in the template", as for any stack update). Returns the pairs already updated."""
    dropped = {p["ParameterKey"] for p in live.get("Parameters", [])} - {key for key, _ in node.declared}
    if not dropped:
        return []
    api = ctx.api(node)
    stale = [pair for pair in ((i["Account"], i["Region"]) for i in instances)
             if dropped & set(api.instance_overrides(*pair))]  # fmt: skip
    for regions, accounts, values in call_groups(stale, overrides):
        yield from ctx.operations.perform(api, "update_stack_instances", Regions=regions,
                                          ParameterOverrides=api_parameters(values),
                                          OperationPreferences=node.operation_preferences,
                                          **target_arguments(node, accounts, recorded_units(instances)))  # fmt: skip
    return stale


def create_stack_set(ctx: Context, node: Node, params: dict[str, str]) -> None:
    """CreateStackSet is synchronous: no operation to wait for."""
    service = node.permission_model is PermissionModel.service_managed
    extra: dict[str, Any] = {}
    if service:
        extra["AutoDeployment"] = {
            "Enabled": node.auto_deployment,
            **({"RetainStacksOnAccountRemoval": False} if node.auto_deployment else {}),
        }
    ctx.run.emit(node.name, State.RUNNING, "create_stack_set")
    start = ctx.run.clock()
    try:
        ctx.api(node).create(Parameters=api_parameters(params), Capabilities=list(node.capabilities),
                             PermissionModel="SERVICE_MANAGED" if service else "SELF_MANAGED",
                             ManagedExecution={"Active": True}, **ctx.staging.template_argument(node),
                             **extra)  # fmt: skip
    except ClientError as error:
        # a retried create whose first answer was lost: the StackSet is there, carry on
        if error_code(error) != "NameAlreadyExistsException":
            raise NodeFailed(str(explain(error))) from None
    ctx.run.timeline(node.name, "create_stack_set", start)
