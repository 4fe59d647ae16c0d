"""The render choke point: stable bytes, the size limit, and writes that never leave templates/ half-done."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from troposphere import Output, Tags, Template, s3

from generator.render import (
    HEADER,
    MAX_TEMPLATE_BYTES,
    TemplateTooLarge,
    compare,
    render,
    render_all,
    write,
)
from stacksets.naming import all_stackset_names
from tests.conftest import ROOT


def small_template() -> Template:
    template = Template(Description="demo")
    template.add_resource(s3.Bucket("Zeta"))
    template.add_resource(s3.Bucket("Alpha"))
    template.add_output(Output("Name", Value="x"))
    return template


def test_render_is_sorted_with_header_and_one_trailing_newline():
    text = render(small_template(), "demo").decode()
    assert text.startswith(HEADER)
    assert text.endswith("\n") and not text.endswith("\n\n")
    assert text.index("Alpha:") < text.index("Zeta:")
    assert text.index("Outputs:") < text.index("Resources:")  # sorted keys, as the module docstring promises


def test_render_ignores_the_cfn_flip_width_variable():
    script = (
        "from generator.render import render_all; from stacksets.config import load_config;"
        "import hashlib,sys; files = render_all(load_config('config.yaml')).templates;"
        "sys.stdout.write(hashlib.sha256(b''.join(files[k] for k in sorted(files))).hexdigest())"
    )
    digests = {
        subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                       check=True).stdout  # fmt: skip
        for env in ({"PYTHONHASHSEED": "1"}, {"PYTHONHASHSEED": "2", "CFN_MAX_COL_WIDTH": "20"})
    }
    assert len(digests) == 1


def test_template_over_the_limit_is_refused():
    template = Template()
    for index in range(400):
        bucket = s3.Bucket(f"Bucket{index:04d}", BucketName=f"bucket-{index:04d}", Tags=Tags(purpose="x" * 2_600))
        template.add_resource(bucket)
    with pytest.raises(TemplateTooLarge, match=str(MAX_TEMPLATE_BYTES)):
        render(template, "huge")


def test_render_all_names_one_file_per_stackset(cfg):
    files = render_all(cfg).templates
    assert sorted(files) == sorted([
        "rstudio-bootstrap.yaml", "rstudio-central.yaml", "rstudio-data.yaml", "rstudio-logs.yaml",
        "rstudio-dev-zone.yaml", "rstudio-dev-delegation.yaml", "rstudio-dev-data.yaml", "rstudio-dev-storage.yaml",
        "rstudio-dev.yaml",
        "rstudio-prod-zone.yaml", "rstudio-prod-delegation.yaml", "rstudio-prod-data.yaml", "rstudio-prod-storage.yaml",
        "rstudio-prod.yaml",
    ])  # fmt: skip
    assert sorted(files) == sorted(f"{name}.yaml" for name in all_stackset_names(sorted(cfg.instances)))
    assert render_all(cfg).templates == files


def test_write_replaces_changed_removes_orphans_and_keeps_unchanged(tmp_path: Path):
    (tmp_path / "same.yaml").write_bytes(b"same\n")
    (tmp_path / "old.yaml").write_bytes(b"old\n")
    (tmp_path / "orphan.yaml").write_bytes(b"orphan\n")
    (tmp_path / "notes.txt").write_bytes(b"not a template\n")
    before = (tmp_path / "same.yaml").stat().st_mtime_ns

    staleness = write(tmp_path, {"same.yaml": b"same\n", "old.yaml": b"new\n", "added.yaml": b"added\n"})

    assert sorted(p.name for p in tmp_path.iterdir()) == ["added.yaml", "notes.txt", "old.yaml", "same.yaml"]
    assert (tmp_path / "old.yaml").read_bytes() == b"new\n"
    assert (tmp_path / "same.yaml").stat().st_mtime_ns == before
    assert staleness.orphans == ("orphan.yaml",) and staleness.missing == ("added.yaml",)
    assert compare(tmp_path, {"same.yaml": b"same\n", "old.yaml": b"new\n", "added.yaml": b"added\n"}).clean


def test_compare_shows_a_unified_diff(tmp_path: Path):
    (tmp_path / "a.yaml").write_bytes(b"x: 1\n")
    staleness = compare(tmp_path, {"a.yaml": b"x: 2\n"})
    assert "-x: 1" in staleness.describe() and "+x: 2" in staleness.describe()
