"""The state file: operations and image builds in flight, so a run that was interrupted reattaches to them."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any


class StateFile:
    """Operations in flight, written before each mutating call so a later run can reattach."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def _read(self) -> dict[str, Any]:
        try:
            return json.loads(self.path.read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):
            return {"operations": {}}

    def _write(self, data: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        tmp.replace(self.path)  # atomic: an interrupted write never leaves half a file

    def pending(self, key: str) -> dict[str, str] | None:
        with self._lock:
            return self._read()["operations"].get(key)

    def record(self, key: str, operation_id: str, action: str) -> None:
        with self._lock:
            data = self._read()
            data["operations"][key] = {"operation_id": operation_id, "action": action,
                                       "recorded_at": time.time()}  # fmt: skip
            self._write(data)

    def clear(self, key: str, operation_id: str | None = None) -> None:
        """Forget `key`; with `operation_id`, only if that is still the one recorded (a newer one stays)."""
        with self._lock:
            data = self._read()
            entry = data["operations"].get(key)
            if entry and (operation_id is None or entry["operation_id"] == operation_id):
                del data["operations"][key]
                self._write(data)
