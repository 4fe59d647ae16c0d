"""The plan: which StackSets exist, what each deploys where, and in which order. Pure: no boto3, no AWS calls.

A Plan is data. It can be printed, narrowed with `only()`, reversed for destroy, and walked in dependency order by the
executor with graphlib's readiness protocol (a StackSet starts as soon as everything it depends on is done, not when
a whole wave is).
"""

from __future__ import annotations

import graphlib
import hashlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable, Union

from stacksets import naming
from stacksets.config import CallAs, Config, PermissionModel, Rollout
from stacksets.limits import TEMPLATE_BODY_BYTES


class PlanError(Exception):
    """The plan cannot be built (a cycle, a missing template); worded for the user."""


@dataclass(frozen=True)
class OutputRef:
    """A parameter value read from another StackSet's stack instance output (the orchestrator resolves it)."""

    stackset: str
    output: str
    account: str
    region: str

    def __str__(self) -> str:
        return f"<{self.stackset} {self.account}/{self.region} output {self.output}>"


ParameterValue = Union[str, OutputRef]


@dataclass(frozen=True)
class Targets:
    """Where instances go: accounts (self-managed, or filtered by OU when service-managed) times regions."""

    regions: tuple[str, ...]
    accounts: tuple[str, ...] = ()
    organizational_units: tuple[str, ...] = ()

    def explicit_pairs(self) -> list[tuple[str, str]]:
        """Account/region pairs named directly (OU-only targets expand at run time against the organization)."""
        return [(account, region) for account in self.accounts for region in self.regions]


@dataclass(frozen=True)
class Override:
    """Parameter overrides for the instances of one account and region."""

    account: str
    region: str
    parameters: tuple[tuple[str, ParameterValue], ...]


@dataclass(frozen=True)
class Node:
    name: str
    template_file: str
    template_body: str
    template_sha256: str
    targets: Targets
    permission_model: PermissionModel
    call_as: CallAs | None
    operation_preferences: dict[str, object]
    parameters: tuple[tuple[str, ParameterValue], ...] = ()
    overrides: tuple[Override, ...] = ()
    depends_on: tuple[str, ...] = ()
    auto_deployment: bool = False
    capabilities: tuple[str, ...] = ("CAPABILITY_NAMED_IAM",)

    @property
    def needs_s3(self) -> bool:
        """Too large for an inline TemplateBody: deployed from the staging bucket with TemplateURL."""
        return len(self.template_body.encode("utf-8")) > TEMPLATE_BODY_BYTES

    def output_refs(self) -> list[OutputRef]:
        values = [value for _, value in self.parameters]
        values += [value for override in self.overrides for _, value in override.parameters]
        return [value for value in values if isinstance(value, OutputRef)]


@dataclass(frozen=True)
class Plan:
    nodes: dict[str, Node] = field(default_factory=dict)

    def sorter(self) -> graphlib.TopologicalSorter[str]:
        """A prepared sorter for readiness-driven walks (get_ready / done)."""
        sorter: graphlib.TopologicalSorter[str] = graphlib.TopologicalSorter()
        for name in sorted(self.nodes):
            sorter.add(name, *sorted(dep for dep in self.nodes[name].depends_on if dep in self.nodes))
        try:
            sorter.prepare()
        except graphlib.CycleError as error:
            cycle = " -> ".join(error.args[1])
            raise PlanError(f"the StackSets depend on each other in a cycle: {cycle}") from None
        return sorter

    def waves(self) -> list[list[str]]:
        """Dependency levels, each sorted by name: what the plan prints (execution itself does not wait for waves)."""
        sorter = self.sorter()
        waves = []
        while sorter.is_active():
            ready = sorted(sorter.get_ready())
            waves.append(ready)
            sorter.done(*ready)
        return waves

    def order(self) -> list[str]:
        return [name for wave in self.waves() for name in wave]

    def dependents(self, name: str) -> list[str]:
        return sorted(other for other, node in self.nodes.items() if name in node.depends_on)

    def reversed(self) -> Plan:
        """The same StackSets with every edge turned around: the destroy order."""
        nodes = {name: replace(node, depends_on=tuple(self.dependents(name))) for name, node in self.nodes.items()}
        return Plan(nodes)

    def only(self, names: Iterable[str], with_dependencies: bool = True) -> Plan:
        wanted = set(names)
        unknown = sorted(wanted - set(self.nodes))
        if unknown:
            raise PlanError(f"unknown StackSet(s) {', '.join(unknown)}; the plan has {', '.join(sorted(self.nodes))}")
        if with_dependencies:
            pending = list(wanted)
            while pending:
                for dep in self.nodes[pending.pop()].depends_on:
                    if dep not in wanted:
                        wanted.add(dep)
                        pending.append(dep)
        return Plan({name: node for name, node in self.nodes.items() if name in wanted})


# --------------------------------------------------------------------------------------------------------------------
# Building the plan from the config and the committed templates


def operation_preferences(rollout: Rollout, regions: tuple[str, ...]) -> dict[str, object]:
    """The StackSets API's OperationPreferences for a rollout (the strict-mode trap is refused by config validation)."""
    preferences: dict[str, object] = {
        "RegionConcurrencyType": rollout.region_concurrency.upper(),
        "ConcurrencyMode": rollout.concurrency_mode.value.upper(),
    }
    if rollout.max_concurrent_count is not None:
        preferences["MaxConcurrentCount"] = rollout.max_concurrent_count
    elif rollout.max_concurrent_percentage is not None:
        preferences["MaxConcurrentPercentage"] = rollout.max_concurrent_percentage
    if rollout.failure_tolerance_count is not None:
        preferences["FailureToleranceCount"] = rollout.failure_tolerance_count
    elif rollout.failure_tolerance_percentage is not None:
        preferences["FailureTolerancePercentage"] = rollout.failure_tolerance_percentage
    if len(regions) > 1:
        preferences["RegionOrder"] = list(regions)
    return preferences


def _template(templates_dir: Path, stackset: str) -> tuple[str, str, str]:
    file_name = naming.template_file(stackset)
    path = templates_dir / file_name
    try:
        body = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PlanError(f"{path}: missing; run `python deploy.py render` and commit templates/") from None
    return file_name, body, hashlib.sha256(body.encode("utf-8")).hexdigest()


def _targets(cfg: Config, accounts: Iterable[str], regions: Iterable[str]) -> Targets:
    """One account's StackSet. Service-managed StackSets can only target OUs, so they take the bootstrap OUs filtered
    down to the account (AccountFilterType INTERSECTION): the named accounts must live in those OUs."""
    ous = cfg.stacksets.bootstrap.organizational_units
    service = cfg.stacksets.permission_model is PermissionModel.service_managed
    return Targets(regions=tuple(sorted(set(regions))), accounts=tuple(sorted(set(accounts))),
                   organizational_units=tuple(ous) if service else ())  # fmt: skip


def build_plan(cfg: Config, templates_dir: Path) -> Plan:
    """Every StackSet the config implies, with its template, targets, parameters and dependencies."""
    service = cfg.stacksets.permission_model is PermissionModel.service_managed
    call_as = cfg.stacksets.call_as if service else None
    default = cfg.default_region

    def node(name: str, targets: Targets, depends_on: Iterable[str] = (), **extra: object) -> Node:
        file_name, body, digest = _template(templates_dir, name)
        return Node(name=name, template_file=file_name, template_body=body, template_sha256=digest, targets=targets,
                    permission_model=cfg.stacksets.permission_model, call_as=call_as,
                    operation_preferences=operation_preferences(cfg.stacksets.rollout, targets.regions),
                    depends_on=tuple(sorted(depends_on)), **extra)  # type: ignore[arg-type]  # fmt: skip

    nodes: list[Node] = []
    # The reader role is global (IAM), so the bootstrap goes to one region only.
    if service:
        bootstrap_ous = cfg.stacksets.bootstrap.organizational_units
        bootstrap_targets = Targets(regions=(default,), organizational_units=bootstrap_ous)
    else:
        accounts = {cfg.accounts.central, cfg.accounts.network, cfg.accounts.data, *cfg.stacksets.bootstrap.accounts}
        accounts |= {inst.account for inst in cfg.instances.values()}
        bootstrap_targets = Targets(regions=(default,), accounts=tuple(sorted(accounts)))
    nodes.append(node(naming.BOOTSTRAP, bootstrap_targets, auto_deployment=service))
    nodes.append(node(naming.CENTRAL, _targets(cfg, [cfg.accounts.central], [default]), [naming.BOOTSTRAP]))
    nodes.append(node(naming.DATA, _targets(cfg, [cfg.accounts.data], [default]), [naming.BOOTSTRAP]))

    delegations: list[tuple[str, ParameterValue]] = []
    for name in sorted(cfg.instances):
        inst = cfg.instances[name]
        region = cfg.region_of(name)
        zone = naming.zone_stackset(name)
        nodes.append(node(zone, _targets(cfg, [inst.account], [region]), [naming.BOOTSTRAP]))
        nodes.append(node(naming.instance_data_stackset(name), _targets(cfg, [cfg.accounts.data], [default]),
                          [naming.DATA]))  # fmt: skip
        nodes.append(node(naming.instance_stackset(name), _targets(cfg, [inst.account], [region]),
                          [zone, naming.NETWORK, naming.instance_data_stackset(name), naming.CENTRAL]))  # fmt: skip
        name_servers = OutputRef(zone, "NameServers", inst.account, region)
        delegations.append((naming.logical_id(name, "NameServers"), name_servers))

    network_targets = _targets(cfg, [cfg.accounts.network], [default])
    overrides = (Override(cfg.accounts.network, default, tuple(delegations)),)
    nodes.append(node(naming.NETWORK, network_targets, [naming.zone_stackset(name) for name in cfg.instances],
                      overrides=overrides))  # fmt: skip
    plan = Plan({n.name: n for n in sorted(nodes, key=lambda n: n.name)})
    plan.sorter()  # fail early on a cycle
    return plan
