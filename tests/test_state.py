"""The state file: operations in flight survive the process, and clearing one never forgets a newer one."""

from __future__ import annotations

import json
from pathlib import Path

from stacksets.state import StateFile


def test_a_recorded_operation_is_pending_for_a_later_run(tmp_path: Path) -> None:
    StateFile(tmp_path / "state.json").record("rstudio-central", "op-1", "create_stack_instances")

    later = StateFile(tmp_path / "state.json")  # another process, as it were
    pending = later.pending("rstudio-central")
    assert pending is not None
    assert (pending["operation_id"], pending["action"]) == ("op-1", "create_stack_instances")
    assert later.pending("rstudio-data") is None


def test_clearing_an_older_operation_keeps_the_newer_one(tmp_path: Path) -> None:
    state = StateFile(tmp_path / "state.json")
    state.record("rstudio-central", "op-1", "create_stack_instances")
    state.record("rstudio-central", "op-2", "update_stack_instances")

    state.clear("rstudio-central", "op-1")
    assert state.pending("rstudio-central")["operation_id"] == "op-2"
    state.clear("rstudio-central", "op-2")
    assert state.pending("rstudio-central") is None
    assert json.loads((tmp_path / "state.json").read_text()) == {"operations": {}}


def test_clearing_without_an_id_forgets_whatever_is_recorded(tmp_path: Path) -> None:
    state = StateFile(tmp_path / "state.json")
    state.record("rstudio-images/rstudio:ctx-1", "build-1", "start_build")
    state.clear("rstudio-images/rstudio:ctx-1")
    assert state.pending("rstudio-images/rstudio:ctx-1") is None


def test_a_missing_or_corrupt_file_reads_as_nothing_in_flight(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "state.json"
    assert StateFile(path).pending("rstudio-central") is None
    path.parent.mkdir()
    path.write_text("{not json", encoding="utf-8")
    state = StateFile(path)
    assert state.pending("rstudio-central") is None
    state.record("rstudio-central", "op-1", "create_stack_instances")  # and is replaced whole on the next write
    assert state.pending("rstudio-central")["operation_id"] == "op-1"
    assert not path.with_suffix(".tmp").exists()
