"""Warnings for `plan` before a config crosses a default StackSets quota of the administrator account.

AWS refuses CreateStackSet or CreateStackInstances with LimitExceededException only once the rollout is under way;
raising a quota takes a Service Quotas request and time, so the plan says so before anything is deployed. The limits
come from the scenario's `Limits` (AWS defaults unless a scenario raises them), so the sandbox and the benchmark
check against the same numbers as the model enforces.
"""

from __future__ import annotations

from collections.abc import Mapping

from stacksets.awsmodel.scenario import Limits

SERVICE = "AWS CloudFormation"
# Per account and Region, AWS defaults (stacksets/awsmodel/scenario.py Quotas cites them): (resource type, service,
# quota name, default, how many the account already has: its default VPC)
PLACE_QUOTAS = (
    ("AWS::EC2::VPC", "Amazon Virtual Private Cloud (Amazon VPC)", "VPCs per Region", 5, 1),
    ("AWS::EC2::EIP", "Amazon Elastic Compute Cloud (Amazon EC2)", "EC2-VPC Elastic IPs", 5, 0),
)
STACK_SETS_QUOTA = "Stack sets per administrator account"
STACK_INSTANCES_QUOTA = "Stack instances per stack set"


def _near_or_over(count: int, limit: int) -> bool:
    """True from 90 % of the limit on (integer arithmetic, so 900 of 1000 counts and 899 does not)."""
    return count * 10 >= limit * 9


def _warning(subject: str, count: int, limit: int, quota: str) -> str:
    state = "exceeds" if count > limit else "is within 10 % of"
    return (f"{subject}: {count} {state} the quota {quota!r} ({limit}); request an increase in the Service Quotas "
            f"console (service {SERVICE}) before deploying")  # fmt: skip


def quota_warnings(stackset_count: int, instances_per_stackset: Mapping[str, int],
                   limits: Limits | None = None) -> list[str]:  # fmt: skip
    """One warning per quota the config exceeds or comes within 10 % of: StackSets in the administrator account, and
    stack instances of each StackSet (by name, in name order)."""
    limits = limits or Limits()
    warnings = []
    if _near_or_over(stackset_count, limits.stack_sets_per_administrator):
        warnings.append(_warning("StackSets in the administrator account", stackset_count,
                                 limits.stack_sets_per_administrator, STACK_SETS_QUOTA))  # fmt: skip
    for name, count in sorted(instances_per_stackset.items()):
        if _near_or_over(count, limits.stack_instances_per_stack_set):
            warnings.append(_warning(f"stack instances of {name}", count, limits.stack_instances_per_stack_set,
                                     STACK_INSTANCES_QUOTA))  # fmt: skip
    return warnings


def place_quota_warnings(templates_by_place: Mapping[tuple[str, str], list[str]]) -> list[str]:
    """Warnings for the accounts and Regions whose templates together need more VPCs or Elastic IPs than AWS's
    default quotas allow (several instances in one account): the instance past the quota fails on create, after
    everything before it was built. `templates_by_place`: (account, region) -> the template bodies deployed there."""
    warnings = []
    for (account, region), bodies in sorted(templates_by_place.items()):
        for resource_type, service, quota, default, existing in PLACE_QUOTAS:
            needed = existing + sum(body.count(f"Type: {resource_type}\n") for body in bodies)
            if needed > default:
                warnings.append(f"account {account} in {region} needs {needed} of {quota!r} (default {default}"
                                f"{', its default VPC included' if existing else ''}); check the account's quota "
                                f"in the Service Quotas console (service {service}) and raise it before deploying")
    return warnings
