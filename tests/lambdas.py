"""Load a Lambda handler from lambda_src/ by path, as Lambda does (the directories are not Python packages)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType


def load_handler(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
