from __future__ import annotations

import copy
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from stacksets.config import Config, load_config

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_CONFIG = ROOT / "config.yaml"
TEMPLATES = ROOT / "templates"

_EXAMPLE_DATA = yaml.safe_load(EXAMPLE_CONFIG.read_text(encoding="utf-8"))


@pytest.fixture
def example_data() -> dict[str, Any]:
    """The example config as plain data, safe to mutate."""
    return copy.deepcopy(_EXAMPLE_DATA)


@pytest.fixture(scope="session")
def cfg() -> Config:
    return load_config(EXAMPLE_CONFIG)


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A checkout of its own (config, templates, build contexts) as the current directory: the default paths are
    the ones the messages name, and the sandbox keeps its rehearsal under .rstudio-fargate/ here, not in the repo."""
    shutil.copy(EXAMPLE_CONFIG, tmp_path / "config.yaml")
    shutil.copytree(TEMPLATES, tmp_path / "templates")
    shutil.copytree(ROOT / "container", tmp_path / "container")
    monkeypatch.chdir(tmp_path)
    return tmp_path
