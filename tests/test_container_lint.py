"""hadolint and shellcheck over every Dockerfile and start-up script under container/ (CI also runs them directly)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

CONTAINER = ROOT / "container"
DOCKERFILES = sorted(CONTAINER.glob("*/Dockerfile"))
SCRIPTS = sorted(path for path in CONTAINER.rglob("*") if path.is_file()
                 and (path.suffix == ".sh" or path.parent.name == "cont-init.d"))  # fmt: skip


def tool(name: str) -> str:
    """The linter installed beside this Python (the dev extra), else one on PATH."""
    beside_python = Path(sys.executable).parent / name
    found = str(beside_python) if beside_python.exists() else shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed (pip install -e '.[dev]')")
    return found


def test_every_image_has_a_dockerfile_and_a_start_script():
    assert [path.parent.name for path in DOCKERFILES] == ["bastion", "rstudio", "shiny"]
    assert {path.relative_to(CONTAINER).parts[0] for path in SCRIPTS} == {"bastion", "rstudio", "shiny"}


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=[path.parent.name for path in DOCKERFILES])
def test_hadolint_is_clean(dockerfile):
    result = subprocess.run([tool("hadolint"), "--config", str(CONTAINER / ".hadolint.yaml"), str(dockerfile)],
                            capture_output=True, text=True, check=False)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("script", SCRIPTS, ids=[str(path.relative_to(CONTAINER)) for path in SCRIPTS])
def test_shellcheck_is_clean(script):
    result = subprocess.run([tool("shellcheck"), str(script)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
