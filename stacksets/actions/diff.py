"""What a deploy would change in one StackSet: the template, the parameters and the instances to create, update
and delete."""

from __future__ import annotations

from typing import Any

from stacksets.actions.context import Context
from stacksets.naming import DELETION_PROTECTION_PARAMETER
from stacksets.plan import DeclaredParameter, Node
from stacksets.results import NodeDiff

MASKED = "****"  # how DescribeStackSet shows a NoEcho parameter's value


def diff_stackset(ctx: Context, node: Node, strict: bool, live: dict[str, Any] | None = None,
                  instances: list[dict[str, Any]] | None = None) -> NodeDiff:  # fmt: skip
    """`live` and `instances` are read unless the caller already has them; not `strict`, unknown outputs read
    "(from <ref>)" instead of failing."""
    api = ctx.api(node)
    live = api.describe() if live is None else live
    params, overrides = ctx.parameters.parameters(node, strict)
    desired, warnings = ctx.desired_pairs(node)
    if live is None:
        return NodeDiff(node.name, False, True, bool(params), params, create=tuple(desired),
                        instances=len(desired), warnings=tuple(warnings))  # fmt: skip
    live_params = {p["ParameterKey"]: p.get("ParameterValue", "") for p in live.get("Parameters", [])}
    instances = api.instances() if instances is None else instances
    existing = {(i["Account"], i["Region"]): i for i in instances}
    extra = tuple(sorted(set(existing) - set(desired)))
    update, retry = [], []
    for pair in desired:
        if pair not in existing:
            continue
        if existing[pair].get("Status") == "OUTDATED":
            retry.append(pair)
        elif (pair in overrides or _may_be_left_unprotected(node)) and \
                api.instance_overrides(*pair) != overrides.get(pair, {}):  # fmt: skip
            update.append(pair)
    prune = ctx.run.options.prune
    parameters_changed = _parameters_differ(live_params, params, dict(node.declared))
    return NodeDiff(node.name, True, live.get("TemplateBody") != node.template_body, parameters_changed, params,
                    create=tuple(p for p in desired if p not in existing), retry=tuple(retry), update=tuple(update),
                    delete=extra if prune else (), orphaned=() if prune else extra,
                    instances=len(desired) + (0 if prune else len(extra)),
                    warnings=tuple(warnings), live_template=live.get("TemplateBody"),
                    live_pairs=tuple(sorted(existing)))  # fmt: skip


def _may_be_left_unprotected(node: Node) -> bool:
    """An instance created with its deletion protection off (actions/deploy.py) whose run stopped before switching
    it on still carries that override: the next deploy must notice it, though the plan has no overrides here."""
    return DELETION_PROTECTION_PARAMETER in dict(node.declared)


def _parameters_differ(live: dict[str, str], wanted: dict[str, str], declared: dict[str, DeclaredParameter]) -> bool:
    """DescribeStackSet lists every template parameter, a defaulted one with its default, and NoEcho values masked
    (terraform-provider-aws, aws_cloudformation_stack_set: "All template parameters, including those with a Default,
    must be configured or ignored"): a parameter the plan leaves to its default is unchanged while the live value is
    that default, and a masked value cannot be compared at all."""
    for key in set(live) | set(wanted):
        spec = declared.get(key, DeclaredParameter(None, False))
        want = wanted.get(key, spec.default if spec.default is not None else "")
        have = live.get(key, "")
        if spec.no_echo and have == MASKED:
            continue
        if have != want:
            return True
    return False
