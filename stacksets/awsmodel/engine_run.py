"""One stack operation in progress: resources in dependency waves, the rollback and the deletions it implies."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stacksets.awsmodel import engine_rules as rules
from stacksets.awsmodel.intrinsics import EvaluationError, Scope, Template, TemplateError, evaluate, evaluate_conditions
from stacksets.awsmodel.resources import exists_message, given_name, is_custom

if TYPE_CHECKING:
    from stacksets.awsmodel.engine import Resource, Stack, StackEngine

CANCELLED = {"create": "Resource creation cancelled", "update": "Resource update cancelled"}


class Run:
    def __init__(self, engine: StackEngine, stack: Stack, template: Template, typed: dict[str, Any] | None, *,
                 updating: bool = False) -> None:
        self.engine, self.stack, self.template, self.updating = engine, stack, template, updating
        self.created_now: set[str] = set()
        self.log: list[tuple[str, str, Resource | None]] = []  # (logical id, action, resource it replaced)
        self.failed_verb = "create"
        self.attempted: list[str] = []
        if typed is None:  # a deletion needs no evaluation
            self.included, self.violations = list(stack.resources), []
            return
        pseudo = {"AWS::AccountId": stack.account, "AWS::Region": stack.region, "AWS::Partition": stack.partition,
                  "AWS::StackName": stack.name, "AWS::StackId": stack.stack_id, "AWS::NotificationARNs": [],
                  "AWS::URLSuffix": rules.url_suffix(stack.region), "AWS::NoValue": None}
        from stacksets.awsmodel.engine import StackRefused

        try:
            conditions = evaluate_conditions(template, typed, pseudo)
        except TemplateError as error:
            raise StackRefused("ValidationError", str(error)) from None
        self.scope = Scope(template, typed, pseudo, conditions, self._ref, self._attribute, self._import,
                           stack.region)
        self.included = [lid for lid in template.order
                         if conditions.get(template.resources[lid].get("Condition", ""), True)]
        for name in sorted(template.imports):
            if (stack.account, stack.region, name) not in engine.registry.exports:
                raise StackRefused("ValidationError", f"No export named {name} found")
        self.violations = rules.order_violations(template, self.included)

    # --- intrinsic lookups -----------------------------------------------------------------------------------

    def _ref(self, logical_id: str) -> Any:
        resource = self.stack.resources.get(logical_id)
        if resource is None:
            raise EvaluationError(f"Template format error: Unresolved resource dependencies [{logical_id}]")
        return resource.physical_id

    def _attribute(self, logical_id: str, attribute: str) -> Any:
        resource = self.stack.resources.get(logical_id)
        if resource is None:
            raise EvaluationError(f"Template error: resource {logical_id} is not created")
        if attribute not in resource.attributes:
            if is_custom(resource.resource_type):
                raise EvaluationError(f"CustomResource attribute error: Vendor response doesn't contain {attribute} "
                                      f"key in object {self.stack.stack_id}|{logical_id}")
            raise EvaluationError(f"Template error: resource {logical_id} does not support attribute type "
                                  f"{attribute} in Fn::GetAtt")
        return resource.attributes[attribute]

    def _import(self, name: str) -> str:
        key = (self.stack.account, self.stack.region, name)
        if key not in self.engine.registry.exports:
            raise EvaluationError(f"No export named {name} found")
        self.engine.registry.imports.setdefault(key, set()).add(self.stack.stack_id)
        return self.engine.registry.exports[key][0]

    # --- create and update ---------------------------------------------------------------------------------------

    def warn_about_order(self) -> None:
        if self.violations and not self.engine.env.strict_creation_order:
            self.stack.warnings.append(
                "Not ordered after the VPCGatewayAttachment, so CloudFormation may start them before the internet "
                f"gateway is attached (add DependsOn): {', '.join(self.violations)}")

    def apply(self, order: list[str]) -> list[str]:
        """Create or update `order` in waves; the logical ids that failed (empty when all succeeded)."""
        included = set(self.included)
        pending = [lid for lid in order if lid in included]
        done: set[str] = set()
        failed: list[str] = []
        while pending and not failed:
            wave = [lid for lid in pending if (self.template.dependencies[lid] & included) <= done]
            pending = [lid for lid in pending if lid not in wave]
            plans = [(lid, *self._plan(lid)) for lid in wave]
            for lid, action, _ in plans:
                if action != "none":
                    self._event(lid, "CREATE_IN_PROGRESS" if action == "create" else "UPDATE_IN_PROGRESS",
                                "Requested update requires the creation of a new physical resource; hence creating "
                                "one." if action == "replace" else "")
            for lid, action, props in plans:
                verb = "create" if action == "create" else "update"
                if action == "none":
                    done.add(lid)
                elif failed:
                    self._event(lid, verb.upper() + "_FAILED", CANCELLED[verb])
                    self.attempted.append(lid)
                else:
                    reason = props if action == "fail" else self._execute(lid, action, props)
                    if reason is None:
                        done.add(lid)
                        continue
                    failed.append(lid)
                    self.attempted.append(lid)
                    self.failed_verb = verb if action != "fail" else self.failed_verb
                    self._event(lid, ("CREATE" if lid not in self.stack.resources else "UPDATE") + "_FAILED", reason)
        return failed

    def _plan(self, logical_id: str) -> tuple[str, Any]:
        declaration = self.template.resources[logical_id]
        try:
            props = evaluate(declaration.get("Properties") or {}, self.scope)
        except EvaluationError as error:
            return "fail", str(error)
        old = self.stack.resources.get(logical_id)
        if old is None:
            return "create", props
        if old.properties == props and old.deletion_policy == str(declaration.get("DeletionPolicy", "Delete")):
            return "none", props
        if given_name(old.resource_type, props) != given_name(old.resource_type, old.properties):
            return "replace", props
        return "update", props

    def _execute(self, logical_id: str, action: str, props: dict[str, Any]) -> str | None:
        stack, env, registry = self.stack, self.engine.env, self.engine.registry
        resource_type = self.template.resources[logical_id]["Type"]
        reason = env.take_fault(stack.stackset, stack.account, stack.region, logical_id)
        reason = reason or rules.refusal(self, logical_id, resource_type, props)
        if reason:
            return reason
        old = stack.resources.get(logical_id)
        if action == "update":
            resource = self.engine.new_resource(stack, self.template, logical_id, props, len(stack.events))
            resource.physical_id, resource.attributes, resource.name = old.physical_id, old.attributes, old.name
            if is_custom(resource_type):
                ok, data, message = env.custom_resource(stack, logical_id, resource_type, props, "Update", old)
                if not ok:
                    return f"Received response status [FAILED] from custom resource. Message returned: {message}"
                resource.attributes = dict(data)
        else:
            resource = self.engine.new_resource(stack, self.template, logical_id, props, len(stack.events))
            key = self.engine.name_key(stack, resource)
            if key is not None and key in registry.names:
                return exists_message(resource_type, resource.name, stack.partition, stack.account, stack.region)
            if is_custom(resource_type):
                ok, data, message = env.custom_resource(stack, logical_id, resource_type, props)
                if not ok:
                    return f"Received response status [FAILED] from custom resource. Message returned: {message}"
                resource.attributes = dict(data)
            if key is not None:
                registry.names[key] = stack.stack_id
            self._note_delegation(resource)
            if action == "create":
                self.created_now.add(logical_id)
        stack.resources[logical_id] = resource
        rules.place_tasks(self, logical_id, resource)
        self.log.append((logical_id, action, old))
        self._event(logical_id, "CREATE_COMPLETE" if action == "create" else "UPDATE_COMPLETE")
        return None

    def _note_delegation(self, resource: Resource) -> None:
        records = [resource.properties] if resource.resource_type == "AWS::Route53::RecordSet" else \
            resource.properties.get("RecordSets", []) if resource.resource_type == "AWS::Route53::RecordSetGroup" \
            else []
        for record in records:
            if record.get("Type") == "NS" and record.get("Name"):
                zone = str(record["Name"]).rstrip(".").lower()
                self.engine.registry.delegations[(self.stack.stack_id, resource.logical_id)] = zone

    def publish_outputs(self) -> list[str]:
        stack, registry = self.stack, self.engine.registry
        outputs: dict[str, str] = {}
        exports: dict[str, str] = {}
        for key, output in self.template.outputs.items():
            if not self.scope.conditions.get(output.get("Condition", ""), True):
                continue
            try:
                value = _as_output(evaluate(output.get("Value"), self.scope), key)
                export = output.get("Export")
                if export:
                    exports[_as_output(evaluate(export.get("Name"), self.scope), key)] = value
            except EvaluationError as error:
                self.engine._stack_event(stack, stack.status, str(error))
                return [key]
            outputs[key] = value
        for name in exports:
            owner = registry.exports.get((stack.account, stack.region, name), ("", stack.stack_id))[1]
            if owner != stack.stack_id:
                owner_name = registry.stacks[owner].name if owner in registry.stacks else owner
                self.engine._stack_event(stack, stack.status, f"Export with name {name} is already exported by "
                                                              f"stack {owner_name}")
                return [name]
        in_use = rules.exports_in_use(registry, stack, keep=exports)
        if in_use:
            self.engine._stack_event(stack, stack.status, in_use)
            return ["Outputs"]
        stack.outputs, stack.exports = outputs, exports
        rules.republish_exports(registry, stack)
        return []

    # --- deletion and rollback -----------------------------------------------------------------------------------

    def delete(self, order: list[str], created_now: set[str]) -> list[str]:
        """Delete these resources in this order; the ones that could not be deleted."""
        for lid in reversed(self.attempted):
            if lid not in self.stack.resources:
                self._event(lid, "DELETE_COMPLETE")
        blocked: set[str] = set()
        failed: list[str] = []
        for lid in order:
            if lid in blocked:
                continue
            if not self._delete_one(self.stack.resources[lid], lid in created_now, replacing=False):
                failed.append(lid)
                blocked |= self._dependencies(lid)
        return failed

    def _dependencies(self, logical_id: str) -> set[str]:
        found: set[str] = set()
        todo = [logical_id]
        while todo:
            for dep in self.template.dependencies.get(todo.pop(), ()):
                if dep not in found:
                    found.add(dep)
                    todo.append(dep)
        return found

    def _delete_one(self, resource: Resource, created_now: bool, *, replacing: bool) -> bool:
        stack, registry = self.stack, self.engine.registry
        policy = resource.update_replace_policy if replacing else resource.deletion_policy
        if policy == "Retain" or (policy == "RetainExceptOnCreate" and not created_now):
            self._event(resource.logical_id, "DELETE_SKIPPED", physical=resource.physical_id, kind=resource)
            from stacksets.awsmodel.engine import Retained

            registry.kept.append(Retained(stack.account, stack.region, stack.stack_id, resource))
            self._forget(resource)
            return True
        self._event(resource.logical_id, "DELETE_IN_PROGRESS", physical=resource.physical_id, kind=resource)
        reason = rules.delete_refusal(registry, stack, resource) or self._custom_delete(resource)
        if reason:
            self._event(resource.logical_id, "DELETE_FAILED", reason, physical=resource.physical_id, kind=resource)
            return False
        self._event(resource.logical_id, "DELETE_COMPLETE", physical=resource.physical_id, kind=resource)
        rules.terminate_instances(registry, stack, resource)
        key = self.engine.name_key(stack, resource)
        if key is not None and registry.names.get(key) == stack.stack_id:
            del registry.names[key]
        if registry.delegations.get((stack.stack_id, resource.logical_id)) is not None and not replacing:
            del registry.delegations[(stack.stack_id, resource.logical_id)]
        self._forget(resource)
        return True

    def _custom_delete(self, resource: Resource) -> str | None:
        if not is_custom(resource.resource_type):
            return None
        ok, _, message = self.engine.env.custom_resource(self.stack, resource.logical_id, resource.resource_type,
                                                         resource.properties, "Delete", resource)
        return None if ok else f"Received response status [FAILED] from custom resource. Message returned: {message}"

    def _forget(self, resource: Resource) -> None:
        if self.stack.resources.get(resource.logical_id) is resource:
            del self.stack.resources[resource.logical_id]

    def removed(self) -> list[str]:
        previous = [lid for lid in reversed(self.template.order) if lid in self.stack.resources]
        gone = set(self.stack.resources) - set(self.included)
        return [lid for lid in previous if lid in gone] + sorted(gone - set(previous))

    def delete_replaced_and_removed(self) -> None:
        """The cleanup phase of a successful update; its failures leave the resource behind, not the update failed."""
        for lid, action, old in reversed(self.log):
            if action == "replace" and old is not None and not self._delete_one(old, False, replacing=True):
                self._keep_orphan(old)
        for lid in self.removed():
            resource = self.stack.resources[lid]
            if not self._delete_one(resource, False, replacing=False):
                self._keep_orphan(resource)
                self._forget(resource)

    def _keep_orphan(self, resource: Resource) -> None:
        from stacksets.awsmodel.engine import Retained

        self.engine.registry.kept.append(Retained(self.stack.account, self.stack.region, self.stack.stack_id,
                                                  resource))

    def roll_back(self, previous: dict[str, Resource]) -> None:
        """Undo this update: delete what it created, put back what it changed."""
        for lid in reversed(self.attempted):
            if lid not in previous and lid not in self.stack.resources:
                self._event(lid, "DELETE_COMPLETE")
        for lid, action, old in reversed(self.log):
            resource = self.stack.resources[lid]
            if action in ("create", "replace"):
                self._delete_one(resource, True, replacing=False)
            if action in ("update", "replace") and old is not None:
                self.stack.resources[lid] = old
                self._event(lid, "UPDATE_IN_PROGRESS", physical=old.physical_id, kind=old)
                self._event(lid, "UPDATE_COMPLETE", physical=old.physical_id, kind=old)

    def _event(self, logical_id: str, status: str, reason: str = "", *, physical: str | None = None,
               kind: Resource | None = None) -> None:
        resource = kind or self.stack.resources.get(logical_id)
        resource_type = resource.resource_type if resource else self.template.resources[logical_id]["Type"]
        if physical is None:
            physical = resource.physical_id if resource and status.endswith("COMPLETE") else ""
        self.engine.event(self.stack, resource_type, logical_id, physical, status, reason)


def _as_output(value: Any, key: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    raise EvaluationError(f"Template format error: Every Outputs member must have a Value that is a String ({key})")
