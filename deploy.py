"""rstudio-fargate command line: render, validate and (later) roll out the StackSets.

A thin shell over the libraries in generator/ and stacksets/: it parses arguments, calls one library function per
command, prints, and turns user mistakes into one clear message and exit code 2. `main(argv) -> int` is what tests call.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from stacksets.config import Config, ConfigError, json_schema, load_config
from stacksets.errors import UserError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
SCHEMA_FILE = "config.schema.json"


def cmd_render(args: argparse.Namespace, cfg: Config) -> int:
    """Write templates/ and the images' configuration files from the config, or with --check only report differences."""
    from generator.render import EXAMPLES_CI, outputs, stale_outputs, write

    templates, container = Path(args.templates), Path(args.container)
    rendered = _render(cfg, container)
    if args.check:
        stale = stale_outputs(cfg, templates, container, rendered, EXAMPLES_CI)
        if not stale:
            print(f"{templates}/ and {container}/ are current ({len(rendered.templates)} templates, "
                  f"{len(rendered.container_files)} image configuration files), and so is the CI roles template "
                  f"in {_shown(EXAMPLES_CI)}/")  # fmt: skip
            return EXIT_OK
        sys.stdout.write("".join(staleness.describe() for staleness in stale))
        print("stale: run `python deploy.py render` and commit the result", file=sys.stderr)
        return EXIT_FAILED
    counts = [0, 0]
    for directory, files, shared in outputs(rendered, templates, container, EXAMPLES_CI):
        try:
            staleness = write(directory, files, shared=shared)
        except OSError as error:
            raise ConfigError(f"cannot write {directory}/: {error}") from None
        for name in sorted(set(staleness.changed) | set(staleness.missing)):
            print(f"wrote   {_shown(directory)}/{name}")
            counts[0] += 1
        for name in staleness.orphans:
            print(f"removed {_shown(directory)}/{name}")
            counts[1] += 1
    tags = ", ".join(f"{image} {tag}" for image, tag in sorted(rendered.image_tags.items()))
    print(f"{len(rendered.templates)} templates and {len(rendered.container_files)} image configuration files, "
          f"{counts[0]} changed, {counts[1]} removed; image tags: {tags}")  # fmt: skip
    return EXIT_OK


def _shown(directory: Path) -> Path:
    """A directory as messages name it: relative to the current directory when it lies below it."""
    try:
        return directory.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        return directory


def _render(cfg: Config, container: Path) -> Any:
    """Everything render produces, in memory; what stops it (a missing build context, an oversized template) is a
    problem of the config or the checkout, not a bug."""
    from generator.render import TemplateTooLarge, render_all

    try:
        return render_all(cfg, container)
    except (TemplateTooLarge, FileNotFoundError) as error:
        raise ConfigError(str(error)) from None


def cmd_validate(args: argparse.Namespace, cfg: Config) -> int:
    """Check the committed templates: cfn-lint plus the house rules, offline."""
    from stacksets.naming import all_stackset_names, template_file
    from stacksets.template_checks import check_template, lint_template

    templates = Path(args.templates)
    expected = [template_file(name) for name in all_stackset_names(sorted(cfg.instances))]
    problems = [f"{templates}/{name}: missing; run `python deploy.py render`" for name in expected
                if not (templates / name).is_file()]  # fmt: skip
    from generator.render import CI_ROLES_FILE, EXAMPLES_CI

    checked = 0
    ci_roles = EXAMPLES_CI / CI_ROLES_FILE
    if not ci_roles.is_file():
        problems.append(f"{_shown(ci_roles)}: missing; run `python deploy.py render`")
    for path in sorted(templates.glob("*.yaml")) + ([ci_roles] if ci_roles.is_file() else []):
        text = path.read_text(encoding="utf-8")
        findings = check_template(path.name, text) + lint_template(path.name, text, cfg.regions)
        problems += [str(finding) for finding in findings]
        checked += 1
    for problem in problems:
        print(problem)
    print(f"config ok; {checked} templates checked with cfn-lint ({', '.join(cfg.regions)}) and house rules: "
          f"{len(problems)} problem(s)")  # fmt: skip
    return EXIT_FAILED if problems else EXIT_OK


def cmd_schema(args: argparse.Namespace, _cfg: Config | None) -> int:
    """Write the JSON schema of config.yaml for editors, or with --check fail when the committed one is stale."""
    text = json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"
    output = Path(args.output)
    if args.check:
        current = output.read_text(encoding="utf-8") if output.is_file() else ""
        if current != text:
            print(f"{output} is stale: run `python deploy.py schema`", file=sys.stderr)
            return EXIT_FAILED
        print(f"{output} is current")
        return EXIT_OK
    output.write_text(text, encoding="utf-8")
    print(f"wrote {output}")
    return EXIT_OK


# --------------------------------------------------------------------------------------------------------------------
# Orchestration commands: they deploy the committed templates, never freshly rendered ones (deploy and images only
# render to refuse committed files that are stale).


def _admin_clients(args: argparse.Namespace, cfg: Config) -> Any:
    """The real AWS account's clients (None in the sandbox and offline commands), made once as the command starts, so
    an unknown --profile is the first thing reported, before the plan is read or anything rendered."""
    from stacksets.aws import Clients

    if getattr(args, "sandbox", True):
        return None
    if getattr(args, "admin_clients", None) is None:
        clients = Clients(cfg.default_region, profile=args.profile)
        clients.session()
        args.admin_clients = clients
    return args.admin_clients


def _plan(args: argparse.Namespace, cfg: Config, removing: bool = False) -> Any:
    """The plan, narrowed by --only: to what those StackSets need (deploy, plan ...), or when `removing` (destroy) to
    what stands on them, never what they stand on."""
    from stacksets.plan import PlanError, build_plan

    _admin_clients(args, cfg)
    try:
        plan = build_plan(cfg, Path(args.templates), Path(args.container))
        if not args.only:
            return plan
        return plan.with_dependents(args.only) if removing else plan.only(args.only)
    except PlanError as error:
        raise ConfigError(str(error)) from None


def _image_plan(args: argparse.Namespace, cfg: Config) -> Any:
    """The image step alone (narrowed by --only); in a sandbox that has no rstudio-central yet, with the StackSets
    that create the repositories, the bucket and the build project."""
    from dataclasses import replace

    from stacksets.plan import Plan, PlanError, build_plan

    _admin_clients(args, cfg)
    names = [name for value in args.only or [] for name in value.split(",") if name]
    try:
        plan = build_plan(cfg, Path(args.templates), Path(args.container))
        step = plan.images.select(names) if names else plan.images
    except PlanError as error:
        raise ConfigError(str(error)) from None
    if args.sandbox:
        return replace(plan.only([step.name]), images=step)
    return Plan({}, step)


def _refuse_stale(args: argparse.Namespace, cfg: Config) -> None:
    """deploy and images roll out the committed files as they are; where render would write other bytes, they were
    edited by hand or not rendered after a config change, and that is deployed only when --allow-stale says so."""
    from generator.render import StaleFiles, stale_outputs

    container = Path(args.container)
    stale = stale_outputs(cfg, Path(args.templates), container, _render(cfg, container))
    names = [name for staleness in stale for name in staleness.files()]
    if not names:
        return
    files = ", ".join(names)
    if not args.allow_stale:
        raise StaleFiles(f"the committed {files} {'is' if len(names) == 1 else 'are'} not what `python deploy.py "
                         f"render` writes for {args.config} (edited by hand, or not rendered since the config "
                         "changed): run `python deploy.py render` and commit, or pass --allow-stale to deploy the "
                         "committed files anyway")  # fmt: skip
    print(f"warning: --allow-stale: deploying the committed {files} although `python deploy.py render` would change "
          "them", file=sys.stderr)  # fmt: skip


def _builder(args: argparse.Namespace) -> Any:
    """Who turns a missing image into one in ECR: CodeBuild (the sandbox's too), or this machine's docker."""
    from stacksets.builders import BuilderError, CodeBuild, LocalDocker

    local = getattr(args, "local", False)
    if args.sandbox and local:
        raise ConfigError("--local pushes to the central account's registry with this machine's docker, which the "
                          "sandbox cannot receive: leave out --local or --sandbox")  # fmt: skip
    if local:
        try:
            return LocalDocker()
        except BuilderError as error:
            raise ConfigError(str(error)) from None
    return CodeBuild()


@dataclass
class Aws:
    """Where a command's AWS calls go: the admin account's clients and the clock their operations are timed by
    (simulated in the sandbox), and the file recording operations in flight."""

    clients: Any
    state: Path
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    sandbox: Any = None

    @property
    def limits(self) -> Any:
        """The quotas in force: AWS's defaults, or those of the rehearsal's scenario."""
        return self.sandbox.model.world.limits if self.sandbox is not None else None


@contextmanager
def _aws(args: argparse.Namespace, cfg: Config) -> Iterator[Aws]:
    if not args.sandbox:
        if args.scenario:
            raise ConfigError("--scenario shapes a rehearsal: it needs --sandbox")
        yield Aws(_admin_clients(args, cfg), Path(args.state))
        return
    from stacksets.sandbox import Sandbox

    state_dir = None if args.sandbox_state == "none" else Path(args.sandbox_state)
    with Sandbox(cfg, Path(args.scenario) if args.scenario else None, state_dir) as sandbox:
        where = f"kept in {state_dir}/" if state_dir else "not kept (--sandbox-state none)"
        resumed = "resumed" if sandbox.resumed else "new"
        print(f"sandbox: {resumed} rehearsal AWS ({args.scenario or 'default scenario'}), {where}; simulated time",
              file=sys.stderr)  # fmt: skip
        state = sandbox.operations_file or Path(args.state).with_name("sandbox-operations.json")
        if sandbox.operations_file is None:
            state.unlink(missing_ok=True)  # an unkept rehearsal starts empty: nothing of an earlier one is in flight
        yield Aws(sandbox.clients(), state, sandbox.clock, sandbox.clock.sleep, sandbox)


def _executor(args: argparse.Namespace, aws: Aws, plan: Any, live: bool = True) -> Any:
    from stacksets.executor import Executor, Options
    from stacksets.progress import JsonLines, Progress

    options = Options(timeout_s=args.timeout, max_workers=args.workers, state_path=aws.state,
                      prune=getattr(args, "prune", False))  # fmt: skip
    events = getattr(args, "event_stream", None)  # --json
    progress = (lambda event: None) if not live else JsonLines(events) if events is not None \
        else Progress(plan.order(), stream=sys.stderr)  # fmt: skip
    return Executor(aws.clients, options=options, clock=aws.clock, sleep=aws.sleep, on_event=progress,
                    builder=_builder(args))  # fmt: skip


def _confirm(args: argparse.Namespace, question: str) -> bool:
    if args.yes:
        return True
    if not sys.stdin.isatty():
        raise ConfigError(f"{question} needs confirmation: run on a terminal or pass --yes")
    return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")


def _timeline_path(value: str) -> str:
    """--timeline's format comes from its suffix; a wrong one must stop the command before it deploys anything."""
    path = Path(value)
    suffix = path.suffix.lower()
    if suffix == ".png":
        raise argparse.ArgumentTypeError(f"{value}: PNG is not supported (it would need the system's cairo library); "
                                         "write .svg (browsers and GitHub show it) and convert it if you need PNG")
    if suffix not in (".json", ".svg"):
        raise argparse.ArgumentTypeError(f"{value}: the suffix picks the format: .json (the operations as data) "
                                         "or .svg (a Gantt chart)")
    if not path.parent.is_dir():
        raise argparse.ArgumentTypeError(f"{value}: the directory {path.parent} does not exist")
    return value


def _write_timeline(args: argparse.Namespace, report: Any) -> None:
    from stacksets.report import timeline_json
    from stacksets.timeline_svg import timeline_svg

    if args.timeline:
        svg = Path(args.timeline).suffix.lower() == ".svg"
        text = timeline_svg(report, simulated=args.sandbox) if svg else timeline_json(report)
        Path(args.timeline).write_text(text, encoding="utf-8")
        print(f"timeline written to {args.timeline}", file=sys.stderr)


def cmd_plan(args: argparse.Namespace, cfg: Config) -> int:
    """Compare the committed templates with what is deployed: per StackSet what would change, in dependency waves."""
    from stacksets.cost import CostError, plan_delta
    from stacksets.cost_report import delta_json, delta_text
    from stacksets.report import plan_json, plan_text, retired_plan_text
    from stacksets.retire import Retired

    plan = _plan(args, cfg)
    with _aws(args, cfg) as aws:
        executor = _executor(args, aws, plan, live=False)
        diffs = executor.diff(plan)
        retired = Retired() if args.only else executor.retired(plan)
    try:
        deltas, unknown = plan_delta(plan, diffs), None
    except CostError as error:  # a price the table lacks must not hide the plan: the cost says why it is missing
        deltas, unknown = [], str(error)
    sys.stdout.write(plan_json(plan, diffs, delta_json(deltas, unknown)) if args.json
                     else plan_text(plan, diffs, aws.limits) + delta_text(deltas, unknown)
                     + retired_plan_text(retired, prune=False))  # fmt: skip
    return EXIT_OK


def cmd_deploy(args: argparse.Namespace, cfg: Config) -> int:
    """Roll the committed templates out as StackSets, independent ones in parallel, touching only what changed."""
    from stacksets.report import plan_text, retired_plan_text, status_table, summary_table
    from stacksets.retire import Retired

    plan = _plan(args, cfg)
    _refuse_stale(args, cfg)
    with _aws(args, cfg) as aws:
        executor = _executor(args, aws, plan)
        diffs = executor.diff(plan)
        retired = Retired() if args.only else executor.retired(plan)
        pruning = retired.delete if args.prune else ()
        sys.stdout.write(plan_text(plan, diffs, aws.limits) + retired_plan_text(retired, prune=args.prune))
        if not any(diff.changed for diff in diffs) and not pruning:
            print("nothing to change")
            return EXIT_OK
        _preflight(args, cfg, aws, diffs)
        if not _confirm(args, "deploy these changes"):
            print("nothing deployed")
            return EXIT_FAILED
        if pruning:
            # first: what the retired instance stood on (rstudio-logs in its account) may go in the deploy
            pruned = executor.prune(plan, pruning)
            sys.stdout.write(summary_table(pruned))
            if not pruned.ok:
                return EXIT_FAILED
        report = executor.deploy(plan)
        sys.stdout.write(summary_table(report))
        _write_timeline(args, report)
        if not report.ok:
            return EXIT_FAILED
        sys.stdout.write(status_table(executor.status(plan)))
        if args.sandbox:
            return _rerun(executor, plan)
        return EXIT_OK


def _preflight(args: argparse.Namespace, cfg: Config, aws: Aws, diffs: list[Any]) -> None:
    """Before the first write: what would keep welcome e-mails from going out stops the deploy (PreflightFailed)
    unless --ignore-preflight says to go on."""
    from stacksets.preflight import PreflightFailed, before_deploy

    found = before_deploy(aws.clients, cfg, diffs)
    for note in found.notes:
        print(f"preflight: {note}", file=sys.stderr)
    if found.problems and not args.ignore_preflight:
        raise PreflightFailed(found.problems)
    for problem in found.problems:
        print(f"warning: --ignore-preflight: {problem}", file=sys.stderr)


def _rerun(executor: Any, plan: Any) -> int:
    """A rehearsal also proves convergence: deploying the same plan again must change nothing."""
    again = executor.deploy(plan)
    calls = sum(again.calls.values())
    print(f"sandbox re-run of the same plan: {calls} create/update/delete call(s)")
    if calls or not again.ok:
        print("error: the second deploy was not a no-op; the plan does not converge", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def cmd_status(args: argparse.Namespace, cfg: Config) -> int:
    """Show every StackSet and stack instance with its status and last drift status."""
    from stacksets.report import status_table

    plan = _plan(args, cfg)
    with _aws(args, cfg) as aws:
        sys.stdout.write(status_table(_executor(args, aws, plan, live=False).status(plan)))
    return EXIT_OK


def cmd_drift(args: argparse.Namespace, cfg: Config) -> int:
    """Run StackSet drift detection and list drifted instances and resources (exit 1 when anything drifted)."""
    from stacksets.report import summary_table

    plan = _plan(args, cfg)
    with _aws(args, cfg) as aws:
        report = _executor(args, aws, plan.without_images()).drift(plan)
    sys.stdout.write(summary_table(report))
    return EXIT_FAILED if report.drifted or not report.ok else EXIT_OK


def cmd_destroy(args: argparse.Namespace, cfg: Config) -> int:
    """Delete the compute StackSets in reverse dependency order, keeping the ones that hold data (file systems,
    secrets, buckets, image repositories, zones) unless --data; what a deleted stack retains is named."""
    from stacksets.report import kept_text, retained_text, summary_table

    whole = _plan(args, cfg, removing=True)
    plan = whole if args.data else whole.compute()
    kept = [] if args.data else whole.kept()
    named = set(args.only or ())
    holding = sorted(name for name in named if name in whole.nodes and whole.nodes[name].keeps_data)
    if not args.data and (not plan.nodes or (named and len(holding) == len(named))):
        # --only naming StackSets that hold data means them, not just the compute that stands on them
        raise ConfigError(f"{', '.join(holding or kept)} hold(s) data: destroy keeps them unless you pass --data")
    with _aws(args, cfg) as aws:
        names = ", ".join(plan.reversed().order())
        keeping = f" (keeping {', '.join(kept)})" if kept else ""
        question = f"destroy {names}" + (" INCLUDING THEIR DATA" if args.data else keeping)
        if not _confirm(args, question):
            print("nothing destroyed")
            return EXIT_FAILED
        report = _executor(args, aws, plan.without_images()).destroy(plan)
    sys.stdout.write(summary_table(report) + retained_text(report) + kept_text(kept))
    _write_timeline(args, report)
    return EXIT_OK if report.ok else EXIT_FAILED


def cmd_images(args: argparse.Namespace, cfg: Config) -> int:
    """Build and push the images whose tag (a hash of container/<image>/) is not in the central account's ECR yet."""
    from stacksets.executor import ImageDiff
    from stacksets.report import images_plan_text, summary_table

    plan = _image_plan(args, cfg)
    _refuse_stale(args, cfg)
    with _aws(args, cfg) as aws:
        executor = _executor(args, aws, plan)
        [diff] = [diff for diff in executor.diff(plan) if isinstance(diff, ImageDiff)]
        sys.stdout.write(images_plan_text(diff))
        if not diff.missing:
            return EXIT_OK
        if args.sandbox and plan.nodes:
            print(f"sandbox: deploying {', '.join(plan.nodes)} first, where the builds run", file=sys.stderr)
        if not _confirm(args, f"build and push {', '.join(image for image, _ in diff.missing)}"):
            print("nothing built")
            return EXIT_FAILED
        report = executor.deploy(plan)
    sys.stdout.write(summary_table(report))
    _write_timeline(args, report)
    return EXIT_OK if report.ok else EXIT_FAILED


def cmd_preflight(args: argparse.Namespace, cfg: Config) -> int:
    """Check what a deploy needs outside CloudFormation: SES identities for the welcome e-mails are verified."""
    from stacksets.preflight import check_ses, ses_identities

    if not ses_identities(cfg):
        print("no instance sends welcome e-mails: nothing to check")
        return EXIT_OK
    _plan(args, cfg)
    with _aws(args, cfg) as aws:
        problems = check_ses(aws.clients, cfg)
    for problem in problems:
        print(problem)
    print(f"preflight: {len(problems)} problem(s)")
    return EXIT_FAILED if problems else EXIT_OK


def cmd_connect(args: argparse.Namespace, cfg: Config) -> int:
    """Find the running task of an RStudio server (or Shiny) and print the command that opens a shell in it: ECS
    Exec, or with --ssh SSH through the instance's bastion."""
    from stacksets.connect import connect, target

    target(cfg, args.instance, args.server)  # an unknown instance or server is said before any AWS call
    with _aws(args, cfg) as aws:
        found = connect(aws.clients, cfg, args.instance, args.server, ssh=args.ssh)
    for note in found.notes:
        print(f"note: {note}", file=sys.stderr)
    print(found.command)
    return EXIT_OK


def cmd_cost(args: argparse.Namespace, cfg: Config) -> int:
    """The fixed monthly cost of each instance and shared StackSet from the committed templates, at the dated prices
    of stacksets/prices.json, with the usage-priced items apart."""
    from stacksets.cost import plan_cost
    from stacksets.cost_report import cost_json, cost_text

    report = plan_cost(_plan(args, cfg), cfg)
    sys.stdout.write(cost_json(report) if args.json else cost_text(report))
    return EXIT_OK


def cmd_graph(args: argparse.Namespace, cfg: Config) -> int:
    """Write the StackSet DAG as Mermaid or DOT text, and as an SVG/PNG when Graphviz is installed."""
    from stacksets.graph import dot, mermaid, render_image

    plan = _plan(args, cfg)
    text = mermaid(plan) if args.format == "mermaid" else dot(plan)
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    if args.image:
        if render_image(dot(plan), Path(args.image)):
            print(f"wrote {args.image}", file=sys.stderr)
        else:
            print("graphviz `dot` is not installed: no image written (the text output above is complete)",
                  file=sys.stderr)  # fmt: skip
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", default="config.yaml", metavar="PATH",
                        help="configuration file (default: %(default)s)")  # fmt: skip
    templates = argparse.ArgumentParser(add_help=False)
    templates.add_argument("--templates", default="templates", metavar="DIR",
                           help="template folder (default: %(default)s)")  # fmt: skip
    container = argparse.ArgumentParser(add_help=False)
    container.add_argument("--container", default="container", metavar="DIR",
                           help="folder of the images' build contexts (default: %(default)s)")  # fmt: skip

    parser = argparse.ArgumentParser(prog="deploy.py", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    render = commands.add_parser("render", parents=[common, templates, container], help=cmd_render.__doc__,
                                 description=cmd_render.__doc__)  # fmt: skip
    render.add_argument("--check", action="store_true", help="write nothing; exit 1 with a diff if anything is stale")
    render.set_defaults(handler=cmd_render)

    validate = commands.add_parser("validate", parents=[common, templates], help=cmd_validate.__doc__,
                                   description=cmd_validate.__doc__)  # fmt: skip
    validate.set_defaults(handler=cmd_validate)

    schema = commands.add_parser("schema", parents=[common], help=cmd_schema.__doc__, description=cmd_schema.__doc__)
    schema.add_argument("--output", default=SCHEMA_FILE, metavar="PATH", help="where to write (default: %(default)s)")
    schema.add_argument("--check", action="store_true", help="write nothing; exit 1 if the file is stale")
    schema.set_defaults(handler=cmd_schema, needs_config=False)

    aws = argparse.ArgumentParser(add_help=False)
    aws.add_argument("--sandbox", action="store_true",
                     help="rehearse against a model of AWS on this machine, in simulated time (nothing leaves it)")
    aws.add_argument("--scenario", metavar="FILE",
                     help="with --sandbox: shape the rehearsal organization and inject faults "
                          "(examples/scenarios/)")  # fmt: skip
    aws.add_argument("--sandbox-state", default=".rstudio-fargate/sandbox", metavar="DIR",
                     help="with --sandbox: keep the rehearsal AWS here between commands; 'none' starts empty and "
                          "keeps nothing (default: %(default)s)")  # fmt: skip
    aws.add_argument("--profile", help="AWS profile of the admin account (default: the usual AWS credential chain)")
    aws.add_argument("--state", default=".rstudio-fargate/state.json", metavar="PATH",
                     help="where operations in flight are recorded, so an interrupted run resumes them")
    aws.add_argument("--timeout", type=float, default=21600, metavar="SECONDS",
                     help="give up waiting for one StackSet operation after this long; it keeps running in AWS and "
                          "the next run reattaches to it (default: %(default)s)")  # fmt: skip
    aws.add_argument("--workers", type=int, default=8, help="StackSets deployed at once (default: %(default)s)")
    changes = argparse.ArgumentParser(add_help=False)
    changes.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    changes.add_argument("--timeline", metavar="PATH", type=_timeline_path,
                         help="write the run's operations with start and end: PATH.json as data, PATH.svg as a "
                              "Gantt chart with the critical path")  # fmt: skip
    changes.add_argument("--json", dest="json_events", action="store_true",
                         help="progress as JSON Lines on stdout, one object per event; everything for people goes "
                              "to stderr")  # fmt: skip
    stale = argparse.ArgumentParser(add_help=False)
    stale.add_argument("--allow-stale", action="store_true",
                       help="deploy the committed templates and build contexts even where `render --check` would "
                            "flag them (a warning names them); without it such files are refused")  # fmt: skip

    for name, handler, parents in (
        ("plan", cmd_plan, [common, templates, container, aws]),
        ("deploy", cmd_deploy, [common, templates, container, aws, changes, stale]),
        ("status", cmd_status, [common, templates, container, aws]),
        ("drift", cmd_drift, [common, templates, container, aws]),
        ("destroy", cmd_destroy, [common, templates, container, aws, changes]),
        ("preflight", cmd_preflight, [common, templates, container, aws]),
    ):
        command = commands.add_parser(name, parents=parents, help=handler.__doc__, description=handler.__doc__)
        command.set_defaults(handler=handler)
        command.add_argument("--only", nargs="+", metavar="STACKSET",
                             help="these StackSets and what depends on them (never what they depend on)"
                             if name == "destroy" else
                             "these StackSets (or rstudio-images) and what they depend on")  # fmt: skip
        if name == "plan":
            command.add_argument("--json", action="store_true", help="machine-readable output")
        if name == "deploy":
            command.add_argument("--prune", action="store_true",
                                 help="also delete instances the config no longer has, and the compute StackSets of "
                                      "retired instances (their data is kept)")  # fmt: skip
            command.add_argument("--ignore-preflight", action="store_true",
                                 help="deploy although the preflight (SES identities of the welcome e-mails) found "
                                      "problems; the instances then deploy without those mails")  # fmt: skip
        if name == "destroy":
            command.add_argument("--data", action="store_true",
                                 help="also delete the StackSets that hold data (storage, zones, buckets, image "
                                      "repositories); what their stacks retain is listed")  # fmt: skip

    images = commands.add_parser("images", parents=[common, templates, container, aws, changes, stale],
                                 help=cmd_images.__doc__, description=cmd_images.__doc__)  # fmt: skip
    images.add_argument("--local", action="store_true",
                        help="build with this machine's docker and push through the publisher role, not in "
                             "CodeBuild")  # fmt: skip
    images.add_argument("--only", nargs="+", metavar="IMAGE",
                        help="only these images, e.g. rstudio,shiny (default: every image)")  # fmt: skip
    images.set_defaults(handler=cmd_images)

    connect = commands.add_parser("connect", parents=[common, aws], help=cmd_connect.__doc__,
                                  description=cmd_connect.__doc__)  # fmt: skip
    connect.add_argument("instance", help="an instance of the config")
    connect.add_argument("server", nargs="?",
                         help="the RStudio server: 'rstudio' in shared mode, the user's name in per-user mode; or "
                              "'shiny' (default: the only RStudio server)")  # fmt: skip
    connect.add_argument("--ssh", action="store_true",
                         help="print the SSH command through the instance's bastion instead of ECS Exec")
    connect.set_defaults(handler=cmd_connect)

    cost = commands.add_parser("cost", parents=[common, templates, container], help=cmd_cost.__doc__,
                               description=cmd_cost.__doc__)  # fmt: skip
    cost.add_argument("--json", action="store_true", help="machine-readable output")
    cost.set_defaults(handler=cmd_cost, only=None)  # offline: no --sandbox, so no AWS clients

    graph = commands.add_parser("graph", parents=[common, templates, container], help=cmd_graph.__doc__,
                                description=cmd_graph.__doc__)  # fmt: skip
    graph.add_argument("--format", choices=("mermaid", "dot"), default="mermaid")
    graph.add_argument("--output", metavar="PATH", help="write the text here instead of stdout")
    graph.add_argument("--image", metavar="PATH.svg|PATH.png", help="also render an image with Graphviz")
    graph.add_argument("--only", nargs="+", metavar="STACKSET", help="these StackSets and what they depend on")
    graph.set_defaults(handler=cmd_graph)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # argparse exits on --help and on usage errors; callers want a return code
        return int(exit_.code or 0)
    handler: Callable[[argparse.Namespace, Config | None], int] = args.handler
    try:
        cfg = load_config(args.config) if getattr(args, "needs_config", True) else None
        if getattr(args, "json_events", False):
            # --json: stdout carries JSON only (plan: one document; deploy, destroy, images: one event per line)
            args.event_stream = sys.stdout
            with redirect_stdout(sys.stderr):
                return handler(args, cfg)
        return handler(args, cfg)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
