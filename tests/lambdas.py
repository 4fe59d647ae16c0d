"""What the tests of lambda_src/ handlers share: loading a handler by path, as Lambda does (the directories are not
Python packages), and a stand-in for the ResponseURL CloudFormation gives custom resources."""

from __future__ import annotations

import importlib.util
import json
import urllib.request
from pathlib import Path
from types import ModuleType
from typing import Any


def load_handler(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Responses:
    """Stands in for CloudFormation's pre-signed ResponseURL: records what the handler PUTs there."""

    def __init__(self, fail: int = 0) -> None:
        self.sent: list[dict[str, Any]] = []
        self.requests: list[urllib.request.Request] = []
        self.fail = fail

    def __call__(self, request: urllib.request.Request, timeout: float | None = None) -> Any:
        self.requests.append(request)
        if self.fail:
            self.fail -= 1
            raise OSError("connection reset")
        self.sent.append(json.loads(request.data))
        return self

    def close(self) -> None:
        pass
