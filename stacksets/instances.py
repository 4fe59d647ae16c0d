"""What the reader role sees of a StackSet's instance stacks in the target accounts: why an instance failed (with
its first failing events), its outputs, the welcome e-mails it could not send, and its drifted resources."""

from __future__ import annotations

import json
from typing import Any, Iterable

from botocore.exceptions import ClientError

from stacksets.aws import AwsError
from stacksets.calls import call, pages
from stacksets.naming import WELCOME_MAIL_FUNCTION, WELCOME_MAIL_UNDELIVERED
from stacksets.results import InstanceCounts, InstanceFailure, UndeliveredMail
from stacksets.run import Run
from stacksets.stackset_api import StackSetApi

COMPLETE_STACK_STATES = ["CREATE_COMPLETE", "UPDATE_COMPLETE", "UPDATE_ROLLBACK_COMPLETE", "IMPORT_COMPLETE",
                         "IMPORT_ROLLBACK_COMPLETE"]  # fmt: skip
FAILED_EVENTS = 5
# botocore model StackInstanceStatus INOPERABLE: "excluded from further UpdateStackSet operations. You might need to
# perform a DeleteStackInstances operation, with RetainStacks set to true, to delete the stack instance, and then
# delete the stack manually"
INOPERABLE_HINT = (" (INOPERABLE: its stack could not be deleted and StackSets no longer updates it; remove the cause "
                   "named below and run destroy again, or delete the instance with RetainStacks and then its stack "
                   "by hand)")


IN_PROGRESS_DETAILED = {"PENDING", "RUNNING"}


def succeeded(instance: dict[str, Any]) -> bool:
    """An instance the last operation left in place: DetailedStatus SUCCEEDED, or CURRENT where no DetailedStatus is
    reported."""
    detailed = instance.get("StackInstanceStatus", {}).get("DetailedStatus", "")
    return detailed == "SUCCEEDED" or (not detailed and instance.get("Status") == "CURRENT")


def instance_counts(instances: list[dict[str, Any]]) -> InstanceCounts:
    """ListStackInstances rows counted the way the deploy judges them (InstanceViews.failures): what is not
    SUCCEEDED and not PENDING/RUNNING (botocore StackInstanceComprehensiveStatus.DetailedStatus) has failed."""
    done = sum(1 for instance in instances if succeeded(instance))
    running = sum(1 for instance in instances
                  if instance.get("StackInstanceStatus", {}).get("DetailedStatus", "") in IN_PROGRESS_DETAILED)
    return InstanceCounts(done, len(instances) - done - running, running, len(instances))


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
            if succeeded(instance):
                continue
            detailed = instance.get("StackInstanceStatus", {}).get("DetailedStatus", "")
            reason = instance.get("StatusReason") or f"{instance.get('Status', '')} {detailed}".strip()
            if instance.get("Status") == "INOPERABLE":
                reason += INOPERABLE_HINT
            failures.append(InstanceFailure(pair[0], pair[1], reason, tuple(self.failed_events(instance))))
        for pair in sorted((wanted or set()) - seen):
            failures.append(InstanceFailure(pair[0], pair[1], "no stack instance was created"))
        return failures

    def failed_events(self, instance: dict[str, Any]) -> list[str]:
        """The first failing events of the instance's stack (found by its StackId), oldest first."""
        if not instance.get("StackId"):
            return []
        try:
            events = pages(self.run, self.run.clients.reader(instance["Account"], instance["Region"]),
                           "describe_stack_events", "StackEvents", StackName=instance["StackId"])  # fmt: skip
        except (AwsError, ClientError) as error:
            return [f"(events unavailable: {error})"]
        failed = [e for e in reversed(events) if str(e.get("ResourceStatus", "")).endswith("_FAILED")]
        return [f"{e.get('LogicalResourceId', '')} ({e.get('ResourceType', '')}) {e['ResourceStatus']}: "
                f"{e.get('ResourceStatusReason', '')}" for e in failed[:FAILED_EVENTS]]  # fmt: skip

    def outputs(self, instance: dict[str, Any]) -> dict[str, str] | None:
        """The outputs of a stack instance's stack (found by the StackId StackSets reports, so an older stack of the
        same StackSet left in the account can never be read instead), or None when it is not complete."""
        if not instance.get("StackId"):
            return None
        reader = self.run.clients.reader(instance["Account"], instance["Region"])
        [stack] = call(self.run, reader, "describe_stacks", StackName=instance["StackId"])["Stacks"]
        if stack.get("StackStatus") not in COMPLETE_STACK_STATES:
            return None
        return {o["OutputKey"]: o.get("OutputValue", "") for o in (stack.get("Outputs") or [])}

    def mail_outputs(self, instances: list[dict[str, Any]], pairs: Iterable[tuple[str, str]]) -> dict[
            tuple[str, str], dict[str, str]]:  # fmt: skip
        """The outputs of those instances' stacks that report welcome e-mail, by (account, region)."""
        wanted, found = set(pairs), {}
        for instance in instances:
            pair = (instance["Account"], instance["Region"])
            if pair not in wanted:
                continue
            try:
                outputs = self.outputs(instance)
            except (AwsError, ClientError):
                outputs = None  # unread before the deploy: its mail counts as new; unread after: nothing to say
            if outputs is not None and WELCOME_MAIL_UNDELIVERED in outputs:
                found[pair] = outputs
        return found


def undelivered_mail(pair: tuple[str, str], outputs: dict[str, str]) -> UndeliveredMail | None:
    """What an instance stack's WelcomeMailUndelivered output (JSON, reason -> {user: address}) says was not mailed."""
    text = outputs.get(WELCOME_MAIL_UNDELIVERED, "")
    try:
        by_reason = json.loads(text or "{}")
        rows = [(user, address, why) for why, users in by_reason.items() for user, address in users.items()]
        rows += [("", "", why) for why, users in by_reason.items() if not users]  # a count, when too many failed
    except (ValueError, AttributeError):
        rows = [("", "", text)]
    if not rows:
        return None
    return UndeliveredMail(pair[0], pair[1], outputs.get(WELCOME_MAIL_FUNCTION, ""), tuple(sorted(rows)))
