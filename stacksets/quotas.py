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
