"""The plan: which StackSets exist, what each deploys where, and in which order. Pure: no boto3, no AWS calls.

A Plan is data. It can be printed, narrowed with `only()`, reversed for destroy, and walked in dependency order by the
executor with graphlib's readiness protocol (a StackSet starts as soon as everything it depends on is done, not when
a whole wave is).

Besides the StackSets (`Plan.nodes`) the walk has one step that is not a StackSet: `Plan.images`, the ImageStep between
rstudio-central and the instance StackSets, which makes sure every image tag the instance templates pin is in the
central account's ECR. It is a type of its own rather than a Node with a flag, so nothing that handles StackSets
(templates, targets, instances, drift, destroy) can mistake it for one: the executor dispatches on the type, and
`reversed()` / `without_images()` splice it out of the graph for the commands that only concern StackSets.
"""

from __future__ import annotations

import functools
import graphlib
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterable, Union

import yaml
from cfn_tools import load_yaml

from stacksets import naming
from stacksets.build_context import CONTAINER, context_tag, read_context, zip_context
from stacksets.config import CallAs, Config, PermissionModel, Rollout
from stacksets.errors import UserError
from stacksets.limits import TEMPLATE_BODY_BYTES


class PlanError(UserError):
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
class DeclaredParameter:
    default: str | None
    no_echo: bool


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
    # holds what users would lose (homes, passwords, uploads, images): destroy keeps it unless told to remove data
    keeps_data: bool = False
    # the template's parameters, read once when the plan is built: the diff compares against their defaults
    declared: tuple[tuple[str, DeclaredParameter], ...] = ()

    @property
    def needs_s3(self) -> bool:
        """Too large for an inline TemplateBody: deployed from the staging bucket with TemplateURL."""
        return len(self.template_body.encode("utf-8")) > TEMPLATE_BODY_BYTES

    def output_refs(self) -> list[OutputRef]:
        values = [value for _, value in self.parameters]
        values += [value for override in self.overrides for _, value in override.parameters]
        return [value for value in values if isinstance(value, OutputRef)]


@dataclass(frozen=True)
class ImageBuild:
    """One image as committed: the files of container/<image>/ and the content-hash tag the instance templates pin."""

    image: str
    tag: str
    files: Mapping[str, bytes] = field(repr=False)
    executables: frozenset[str] = frozenset()  # paths that are executable on disk: the zip keeps their mode

    @property
    def key(self) -> str:
        return naming.build_context_key(self.image, self.tag)

    def archive(self) -> bytes:
        """The build context as uploaded: the same files always give the same bytes."""
        return zip_context(self.files, self.executables)


@dataclass(frozen=True)
class ImageStep:
    """Every image tag pinned by the instance templates exists in the central account's ECR; missing ones are built
    from their committed contexts. Deploy runs it, status reports it; destroy and drift skip it, because the images
    stay in the repositories that rstudio-central retains."""

    name: str
    account: str  # the central account: its ECR repositories, build bucket and publisher role
    region: str
    bucket: str  # named after the config's central account, as the template names it (the sandbox remaps `account`)
    images: tuple[ImageBuild, ...]
    depends_on: tuple[str, ...] = ()

    def select(self, images: Iterable[str]) -> ImageStep:
        """The same step for some of the images only (`deploy.py images --only`)."""
        wanted = set(images)
        known = [build.image for build in self.images]
        unknown = sorted(wanted - set(known))
        if unknown:
            raise PlanError(f"unknown image(s) {', '.join(unknown)}; the images are {', '.join(known)}")
        return replace(self, images=tuple(build for build in self.images if build.image in wanted))


Step = Union[Node, ImageStep]


@dataclass(frozen=True)
class Plan:
    nodes: dict[str, Node] = field(default_factory=dict)  # the StackSets
    images: ImageStep | None = None
    # Kind (naming.KINDS) -> OperationPreferences for StackSets the config no longer has, which `deploy --prune`
    # deletes (stacksets/retire.py): the default with the kind's override; a name's override went with the name.
    retired_preferences: dict[str, dict[str, object]] = field(default_factory=dict)

    def steps(self) -> dict[str, Step]:
        """Everything the walk runs, by name: the StackSets and the image step."""
        steps: dict[str, Step] = dict(self.nodes)
        if self.images is not None:
            steps[self.images.name] = self.images
        return dict(sorted(steps.items()))

    def step(self, name: str) -> Step:
        return self.steps()[name]

    def sorter(self) -> graphlib.TopologicalSorter[str]:
        """A prepared sorter for readiness-driven walks (get_ready / done)."""
        steps = self.steps()
        sorter: graphlib.TopologicalSorter[str] = graphlib.TopologicalSorter()
        for name in sorted(steps):
            sorter.add(name, *sorted(dep for dep in steps[name].depends_on if dep in steps))
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

    def urgency(self) -> dict[str, tuple[int, int]]:
        """Per step: (the longest chain of steps that wait for it, how many steps wait for it at all). When more
        steps are ready than can make calls at once, the ones with the most behind them go first (critical-path
        list scheduling): a StackSet that 100 others wait for must not queue behind 50 that nothing waits for."""
        steps = self.steps()
        waiting_on: dict[str, set[str]] = {name: set() for name in steps}
        for name, step in steps.items():
            for dependency in step.depends_on:
                if dependency in waiting_on:
                    waiting_on[dependency].add(name)
        urgency: dict[str, tuple[int, int]] = {}
        for name in reversed(self.order()):
            below = waiting_on[name]
            chain = 1 + max((urgency[d][0] for d in below), default=0)
            behind = set(below).union(*(self._behind(d, waiting_on) for d in below)) if below else set()
            urgency[name] = (chain, len(behind))
        return urgency

    @staticmethod
    def _behind(name: str, waiting_on: dict[str, set[str]]) -> set[str]:
        found, pending = set(), [name]
        while pending:
            for other in waiting_on[pending.pop()]:
                if other not in found:
                    found.add(other)
                    pending.append(other)
        return found

    def dependents(self, name: str) -> list[str]:
        return sorted(other for other, step in self.steps().items() if name in step.depends_on)

    def without_images(self) -> Plan:
        """The StackSets alone; what waited for the image step waits for what the image step waited for, so the
        order between the StackSets stays the same."""
        step = self.images
        if step is None:
            return self

        def splice(depends_on: tuple[str, ...]) -> tuple[str, ...]:
            if step.name not in depends_on:
                return depends_on
            return tuple(sorted({*(dep for dep in depends_on if dep != step.name), *step.depends_on}))

        nodes = {name: replace(node, depends_on=splice(node.depends_on)) for name, node in self.nodes.items()}
        return replace(self, nodes=nodes, images=None)

    def reversed(self) -> Plan:
        """The StackSets with every edge turned around: the destroy order (there is nothing to destroy of images)."""
        plan = self.without_images()
        nodes = {name: replace(node, depends_on=tuple(plan.dependents(name))) for name, node in plan.nodes.items()}
        return replace(plan, nodes=nodes)

    def compute(self) -> Plan:
        """What a destroy removes unless told to remove data too: the StackSets that hold no data and that nothing
        holding data stands on (the bootstrap's reader role stays while a storage StackSet needs reading)."""
        steps = self.steps()  # a narrowed plan (destroy --only) lacks what its steps stand on: nothing to keep there
        kept = self._closure({name for name, node in self.nodes.items() if node.keeps_data},
                             lambda name: steps[name].depends_on if name in steps else ())  # fmt: skip
        return self._restricted(set(steps) - kept)

    def kept(self) -> list[str]:
        """The StackSets `compute()` leaves standing, sorted."""
        return sorted(set(self.nodes) - set(self.compute().nodes))

    def only(self, names: Iterable[str], with_dependencies: bool = True) -> Plan:
        """These steps, and what they depend on (what a deploy of them needs first)."""
        wanted = self._known(names)
        if with_dependencies:
            wanted = self._closure(wanted, lambda name: self.steps()[name].depends_on)
        return self._restricted(wanted)

    def with_dependents(self, names: Iterable[str]) -> Plan:
        """These steps, and what depends on them, never what they depend on: what a destroy of them must remove
        first (an instance StackSet before the zone it delegates), leaving everything they stand on in place."""
        return self._restricted(self._closure(self._known(names), self.dependents))

    def _known(self, names: Iterable[str]) -> set[str]:
        steps = self.steps()
        wanted = set(names)
        unknown = sorted(wanted - set(steps))
        if unknown:
            raise PlanError(f"unknown StackSet(s) {', '.join(unknown)}; the plan has {', '.join(sorted(steps))}")
        return wanted

    @staticmethod
    def _closure(start: set[str], neighbours: Callable[[str], Iterable[str]]) -> set[str]:
        found, pending = set(start), list(start)
        while pending:
            for other in neighbours(pending.pop()):
                if other not in found:
                    found.add(other)
                    pending.append(other)
        return found

    def _restricted(self, wanted: set[str]) -> Plan:
        images = self.images if self.images is not None and self.images.name in wanted else None
        return replace(self, nodes={name: node for name, node in self.nodes.items() if name in wanted}, images=images)


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
    problem, _ = _read_template(body)
    if problem:
        raise PlanError(f"{path}{problem}; run `python deploy.py render` and commit")
    return file_name, body, hashlib.sha256(body.encode("utf-8")).hexdigest()


# Every command builds the plan, and PyYAML's pure-Python loader needs most of a second for the committed templates;
# the same text always gives the same answer, so a repeated plan (tests, the sandbox) parses nothing twice.
@functools.lru_cache(maxsize=64)
def _read_template(body: str) -> tuple[str, dict]:
    """(why CloudFormation would refuse the text, as ":LINE: reason" or ": reason", or ""; the template's data).

    Without this a broken file is only found at its stack instance, after the StackSets before it are written."""
    try:
        template = load_yaml(body)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
        reason = " ".join(str(getattr(error, "problem", None) or error).split())
        return f"{f':{mark.line + 1}' if mark else ''}: not valid CloudFormation YAML ({reason})", {}
    except (ValueError, AttributeError):  # how cfn_tools' !GetAtt constructor fails on a mapping or a nested tag
        return ": not valid CloudFormation YAML (a !GetAtt takes 'Resource.Attribute' or [Resource, Attribute])", {}
    resources = template.get("Resources") if isinstance(template, dict) else None
    if not isinstance(resources, dict) or not resources:
        return (": not a CloudFormation template: the top level has no `Resources` mapping with at least one "
                "resource"), {}  # fmt: skip
    return "", template


def declared_parameters(body: str) -> dict[str, DeclaredParameter]:
    """The template's parameters with their defaults (as DescribeStackSet reports them) and NoEcho flags."""
    declared = _read_template(body)[1].get("Parameters") or {}
    return {key: DeclaredParameter(None if "Default" not in spec else str(spec["Default"]),
                                   str(spec.get("NoEcho", "")).lower() == "true")
            for key, spec in declared.items()}  # fmt: skip


def declared_outputs(body: str) -> set[str]:
    """The names of the template's outputs."""
    return set(_read_template(body)[1].get("Outputs") or {})


def _targets(cfg: Config, accounts: Iterable[str], regions: Iterable[str]) -> Targets:
    """One account's StackSet. Service-managed StackSets can only target OUs, so they take the bootstrap OUs filtered
    down to the account (AccountFilterType INTERSECTION): the named accounts must live in those OUs."""
    ous = cfg.stacksets.bootstrap.organizational_units
    service = cfg.stacksets.permission_model is PermissionModel.service_managed
    return Targets(regions=tuple(sorted(set(regions))), accounts=tuple(sorted(set(accounts))),
                   organizational_units=tuple(ous) if service else ())  # fmt: skip


def _image_builds(container_dir: Path) -> tuple[ImageBuild, ...]:
    builds = []
    for image in naming.IMAGES:
        directory = container_dir / image
        try:
            files = read_context(directory)
            tag = context_tag(files)
        except (FileNotFoundError, ValueError) as error:
            raise PlanError(f"{directory}/: {error}; it is committed: restore it, or pass --container") from None
        executables = frozenset(path for path in files if (directory / path).stat().st_mode & 0o111)
        builds.append(ImageBuild(image, tag, files, executables))
    return tuple(builds)


def _check_pinned_tags(builds: tuple[ImageBuild, ...], instance_nodes: Iterable[Node], templates_dir: Path,
                       container_dir: Path) -> None:  # fmt: skip
    """The committed templates and contexts must agree: otherwise the instances would wait for an image nobody can
    build from what is committed (or run one that is not)."""
    for node in instance_nodes:
        for build in builds:
            pinned = sorted(set(re.findall(rf"/{re.escape(build.image)}:(ctx-[0-9a-f]+)", node.template_body)))
            for tag in pinned:
                if tag != build.tag:
                    raise PlanError(f"{container_dir / build.image}/ does not match the image tag in "
                                    f"{templates_dir / node.template_file} (the context hashes to {build.tag}, the "
                                    f"template pins {tag}): run `python deploy.py render` and commit")  # fmt: skip


def _instance_nodes(cfg: Config, name: str, node: Callable[..., Node]) -> list[Node]:
    """One instance's StackSets: its zone, the zone's delegation, its data-account data, its storage (data in its own
    account) and its compute, which needs all of them."""
    inst = cfg.instances[name]
    here = _targets(cfg, [inst.account], [cfg.region_of(name)])
    zone, delegation = naming.zone_stackset(name), naming.delegation_stackset(name)
    data, storage = naming.instance_data_stackset(name), naming.storage_stackset(name)
    name_servers = OutputRef(zone, "NameServers", inst.account, cfg.region_of(name))
    stored = tuple((output, OutputRef(storage, output, inst.account, cfg.region_of(name)))
                   for output in naming.storage_outputs(inst.bastion.enabled))  # fmt: skip
    return [
        # the zone is kept: a new zone gets new name servers, which resolvers keep caching for the old delegation
        node(zone, here, [naming.BOOTSTRAP], keeps_data=True),
        node(delegation, _targets(cfg, [cfg.accounts.network], [cfg.default_region]), [zone],
             parameters=(("NameServers", name_servers),)),
        node(data, _targets(cfg, [cfg.accounts.data], [cfg.default_region]), [naming.DATA], keeps_data=True),
        node(storage, here, [naming.BOOTSTRAP], keeps_data=True),
        node(naming.instance_stackset(name), here,
             [zone, delegation, data, storage, naming.LOGS, naming.IMAGE_STEP], parameters=stored),
    ]


def build_plan(cfg: Config, templates_dir: Path, container_dir: Path = CONTAINER) -> Plan:
    """Every StackSet the config implies, with its template, targets, parameters and dependencies, and the image step
    with the committed build contexts of `container_dir`."""
    service = cfg.stacksets.permission_model is PermissionModel.service_managed
    call_as = cfg.stacksets.call_as if service else None
    default = cfg.default_region

    def node(name: str, targets: Targets, depends_on: Iterable[str] = (), **extra: object) -> Node:
        file_name, body, digest = _template(templates_dir, name)
        return Node(name=name, template_file=file_name, template_body=body, template_sha256=digest, targets=targets,
                    declared=tuple(sorted(declared_parameters(body).items())),
                    permission_model=cfg.stacksets.permission_model, call_as=call_as,
                    operation_preferences=operation_preferences(cfg.rollout_for(name), targets.regions),
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
    # central keeps the image repositories, data the access logs: both outlive any instance
    nodes.append(node(naming.CENTRAL, _targets(cfg, [cfg.accounts.central], [default]), [naming.BOOTSTRAP],
                      keeps_data=True))  # fmt: skip
    nodes.append(node(naming.DATA, _targets(cfg, [cfg.accounts.data], [default]), [naming.BOOTSTRAP],
                      keeps_data=True))  # fmt: skip
    instance_places = [(cfg.instances[name].account, cfg.region_of(name)) for name in cfg.instances]
    nodes.append(node(naming.LOGS, _targets(cfg, [a for a, _ in instance_places], [r for _, r in instance_places]),
                      [naming.BOOTSTRAP]))  # fmt: skip
    for name in sorted(cfg.instances):
        nodes += _instance_nodes(cfg, name, node)
    builds = _image_builds(container_dir)
    instance_nodes = [n for n in nodes if n.name in {naming.instance_stackset(i) for i in cfg.instances}]
    _check_pinned_tags(builds, instance_nodes, templates_dir, container_dir)
    images = ImageStep(naming.IMAGE_STEP, cfg.accounts.central, default,
                       naming.image_build_bucket(cfg.accounts.central, default), builds,
                       depends_on=(naming.CENTRAL,))  # fmt: skip
    retired = {kind: operation_preferences(cfg.stacksets.rollout.for_kind(kind), ())
               for kind in ("compute", "delegation")}  # fmt: skip
    plan = Plan({n.name: n for n in sorted(nodes, key=lambda n: n.name)}, images, retired)
    plan.sorter()  # fail early on a cycle
    return plan
