"""rstudio-fargate command line: render, validate and (later) roll out the StackSets.

A thin shell over the libraries in generator/ and stacksets/: it parses arguments, calls one library function per
command, prints, and turns user mistakes into one clear message and exit code 2. `main(argv) -> int` is what tests call.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Callable, Sequence

from stacksets.config import Config, ConfigError, json_schema, load_config

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
SCHEMA_FILE = "config.schema.json"


def cmd_render(args: argparse.Namespace, cfg: Config) -> int:
    """Write templates/ from the config, or with --check only report how it differs."""
    from generator.render import TemplateTooLarge, compare, render_all, write

    try:
        rendered = render_all(cfg)
    except TemplateTooLarge as error:
        raise ConfigError(str(error)) from None
    templates = Path(args.templates)
    if args.check:
        staleness = compare(templates, rendered)
        if staleness.clean:
            print(f"{templates}/ is current ({len(rendered)} templates)")
            return EXIT_OK
        sys.stdout.write(staleness.describe())
        print(f"{templates}/ is stale: run `python deploy.py render` and commit the result", file=sys.stderr)
        return EXIT_FAILED
    try:
        staleness = write(templates, rendered)
    except OSError as error:
        raise ConfigError(f"cannot write {templates}/: {error}") from None
    touched = sorted(set(staleness.changed) | set(staleness.missing))
    for name in touched:
        print(f"wrote   {templates}/{name}")
    for name in staleness.orphans:
        print(f"removed {templates}/{name}")
    print(f"{len(rendered)} templates, {len(touched)} changed, {len(staleness.orphans)} removed")
    return EXIT_OK


def cmd_validate(args: argparse.Namespace, cfg: Config) -> int:
    """Check the committed templates: cfn-lint plus the house rules, offline."""
    from stacksets.naming import all_stackset_names, template_file
    from stacksets.template_checks import check_template, lint_template

    templates = Path(args.templates)
    expected = [template_file(name) for name in all_stackset_names(sorted(cfg.instances))]
    problems = [f"{templates}/{name}: missing; run `python deploy.py render`" for name in expected
                if not (templates / name).is_file()]  # fmt: skip
    checked = 0
    for path in sorted(templates.glob("*.yaml")):
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


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", default="config.yaml", metavar="PATH",
                        help="configuration file (default: %(default)s)")  # fmt: skip
    templates = argparse.ArgumentParser(add_help=False)
    templates.add_argument("--templates", default="templates", metavar="DIR",
                           help="template folder (default: %(default)s)")  # fmt: skip

    parser = argparse.ArgumentParser(prog="deploy.py", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    render = commands.add_parser("render", parents=[common, templates], help=cmd_render.__doc__,
                                 description=cmd_render.__doc__)  # fmt: skip
    render.add_argument("--check", action="store_true", help="write nothing; exit 1 with a diff if templates/ is stale")
    render.set_defaults(handler=cmd_render)

    validate = commands.add_parser("validate", parents=[common, templates], help=cmd_validate.__doc__,
                                   description=cmd_validate.__doc__)  # fmt: skip
    validate.set_defaults(handler=cmd_validate)

    schema = commands.add_parser("schema", parents=[common], help=cmd_schema.__doc__, description=cmd_schema.__doc__)
    schema.add_argument("--output", default=SCHEMA_FILE, metavar="PATH", help="where to write (default: %(default)s)")
    schema.add_argument("--check", action="store_true", help="write nothing; exit 1 if the file is stale")
    schema.set_defaults(handler=cmd_schema, needs_config=False)
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
        return handler(args, cfg)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
