"""The only place template bytes are produced.

Output is a pure function of the template: keys sorted, a fixed line width (cfn-flip would otherwise read it from
the CFN_MAX_COL_WIDTH environment variable), LF line endings, one trailing newline, and a header line saying where
the file comes from. Nothing time- or machine-dependent goes in.
"""

from __future__ import annotations

import difflib
import json
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import yaml
from cfn_clean import cfn_literal_parser
from cfn_flip import yaml_dumper
from troposphere import Template

from generator.emitter import TemplateDumper
from generator.images.contexts import GENERATED_HEADER, image_tags, render_container_files
from generator.registry import builders
from generator.stacks import ci_roles
from stacksets.build_context import CONTAINER
from stacksets.config import Config
from stacksets.errors import UserError
from stacksets.limits import TEMPLATE_URL_BYTES
from stacksets.naming import template_file

# cfn-flip folds strings at least this long with ">" and takes the length from the CFN_MAX_COL_WIDTH environment
# variable when it is imported; pinning the module value keeps the bytes independent of whoever runs render.
yaml_dumper.STR_MAX_LENGTH_QUOTED = 200

HEADER = GENERATED_HEADER + "\n"
# Where render writes the CI example's roles template (generator/stacks/ci_roles.py), next to the workflow; not a
# StackSet, so deploy never reads it and it is compared by `render --check` only.
EXAMPLES_CI = Path(__file__).resolve().parent.parent / "examples" / "ci"
CI_ROLES_FILE = "ci-roles.yaml"
LINE_WIDTH = 120
MAX_TEMPLATE_BYTES = TEMPLATE_URL_BYTES


class TemplateTooLarge(Exception):
    pass


class StaleFiles(UserError):
    """Committed templates or generated image files differ from what render writes for the config."""


def render(template: Template, name: str) -> bytes:
    # The JSON round trip turns troposphere's objects into a tree of plain values (shared objects would become YAML
    # aliases) with sorted keys; without indentation it costs a fifth of to_json's default.
    data = json.loads(json.dumps(template.to_dict(), sort_keys=True))
    body = yaml.dump(
        cfn_literal_parser(data),
        Dumper=TemplateDumper,
        default_flow_style=False,
        allow_unicode=True,
        width=LINE_WIDTH,
    )
    text = HEADER + body.rstrip("\n") + "\n"
    payload = text.encode("utf-8")
    if len(payload) > MAX_TEMPLATE_BYTES:
        raise TemplateTooLarge(
            f"{name}: {len(payload)} bytes is over CloudFormation's {MAX_TEMPLATE_BYTES}-byte template limit; "
            "split the instance or reduce what the config puts in it (e.g. users per per_user instance)"
        )
    return payload


@dataclass(frozen=True)
class Rendered:
    """Everything render produces, in memory: nothing is written until all of it exists."""

    templates: dict[str, bytes]  # file name in templates/ -> bytes
    container_files: dict[str, bytes]  # path under container/ -> bytes of a generated configuration file
    image_tags: dict[str, str]  # image -> content-hash tag the instance templates pin
    examples: dict[str, bytes]  # file name in examples/ci/ -> bytes: the CI roles template


def render_all(cfg: Config, container: Path = CONTAINER) -> Rendered:
    """Render the image configuration files, hash the build contexts they complete, then every StackSet's template.

    Raises TemplateTooLarge, or FileNotFoundError when an image's build context is missing, before anything is written.
    """
    container_files = render_container_files(cfg)
    tags = image_tags(container, container_files)
    templates = {template_file(name): render(build(), name) for name, build in builders(cfg, tags).items()}
    examples = {CI_ROLES_FILE: render(ci_roles.build(), CI_ROLES_FILE)}
    return Rendered(templates, container_files, tags, examples)


@dataclass(frozen=True)
class Staleness:
    directory: str  # as the messages name it, e.g. "templates"
    changed: dict[str, str]  # file name -> unified diff
    missing: tuple[str, ...]
    orphans: tuple[str, ...]

    @property
    def clean(self) -> bool:
        return not (self.changed or self.missing or self.orphans)

    def describe(self) -> str:
        parts = [diff for _, diff in sorted(self.changed.items())]
        parts += [f"missing: {self.directory}/{name} (the config implies it)\n" for name in self.missing]
        parts += [f"orphan: {self.directory}/{name} (no StackSet in the config produces it)\n" for name in self.orphans]
        return "".join(parts)

    def files(self) -> list[str]:
        """Every stale file as `directory/name`, sorted: changed, missing and orphaned alike."""
        return [f"{self.directory}/{name}" for name in sorted({*self.changed, *self.missing, *self.orphans})]


def _on_disk(directory: Path, names: Iterable[str] | None) -> dict[str, bytes]:
    """The files render owns in `directory`: every template, or only `names` where render shares the directory."""
    if not directory.is_dir():
        return {}
    if names is None:
        return {path.name: path.read_bytes() for path in sorted(directory.glob("*.yaml"))}
    return {name: (directory / name).read_bytes() for name in sorted(names) if (directory / name).is_file()}


def compare(directory: Path, rendered: dict[str, bytes], *, shared: bool = False) -> Staleness:
    """How `directory` differs from `rendered`. A shared directory (container/) holds hand-written files too, so only
    the rendered names are compared and nothing there counts as an orphan."""
    existing = _on_disk(directory, rendered if shared else None)
    changed = {}
    for name in sorted(set(rendered) & set(existing)):
        if rendered[name] != existing[name]:
            diff = difflib.unified_diff(
                existing[name].decode("utf-8", "replace").splitlines(keepends=True),
                rendered[name].decode("utf-8").splitlines(keepends=True),
                fromfile=f"{directory.name}/{name} (committed)",
                tofile=f"{directory.name}/{name} (rendered)",
            )
            changed[name] = "".join(diff)
    return Staleness(
        directory=directory.name,
        changed=changed,
        missing=tuple(sorted(set(rendered) - set(existing))),
        orphans=tuple(sorted(set(existing) - set(rendered))),
    )


def outputs(rendered: Rendered, templates_dir: Path, container_dir: Path, examples_dir: Path | None = None
            ) -> list[tuple[Path, dict[str, bytes], bool]]:  # fmt: skip
    """(directory, files, shared) for each place render writes: templates/ is render's alone, container/ is shared
    with the hand-written parts of the build contexts, and so is `examples_dir` (examples/ci/, with the workflow)
    when given: render writes it, deploy does not care about it."""
    found = [(templates_dir, rendered.templates, False), (container_dir, rendered.container_files, True)]
    return found + ([(examples_dir, rendered.examples, True)] if examples_dir is not None else [])


def stale_outputs(cfg: Config, templates_dir: Path, container_dir: Path,
                  rendered: Rendered | None = None, examples_dir: Path | None = None) -> list[Staleness]:  # fmt: skip
    """How the committed files differ from what render would write, one Staleness per directory that is not clean.

    The one definition of "stale": `render --check` reports it and `deploy` refuses it. Pass `rendered` when the
    caller has rendered already; otherwise this renders, and raises what render_all raises."""
    if rendered is None:
        rendered = render_all(cfg, container_dir)
    found = [compare(directory, files, shared=shared)
             for directory, files, shared in outputs(rendered, templates_dir, container_dir, examples_dir)]  # fmt: skip
    return [staleness for staleness in found if not staleness.clean]


def write(directory: Path, rendered: dict[str, bytes], *, shared: bool = False) -> Staleness:
    """Make `directory` hold exactly `rendered`: files replaced atomically, orphans removed, unchanged ones untouched.

    All bytes exist in memory before the first write, so a failing build or an oversized template leaves the
    directory as it was; each file is swapped in with os.replace, so no reader ever sees half a file.
    """
    directory.mkdir(parents=True, exist_ok=True)
    staleness = compare(directory, rendered, shared=shared)
    for name in sorted(set(staleness.changed) | set(staleness.missing)):
        target = directory / name
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(rendered[name])
            os.chmod(temporary, 0o644)
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    for name in staleness.orphans:
        (directory / name).unlink()
    return staleness
