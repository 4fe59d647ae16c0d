"""Benchmark: how long `render` takes for the example config and for a large per_user instance.

Targets (2-core CI machine): the example config renders in 0.3 s, and a per_user instance at the user cap
(stacksets.config.MAX_PER_USER_SERVERS) in 1.5 s, both in CPU time of this process (best of several runs): CI machines
are shared, and wall time there measures the neighbours as well; it is printed next to it. Run:
`python bench/render_bench.py` (exits 1 when a target is missed). Not part of the test run.
"""

from __future__ import annotations

import copy
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from generator.render import TemplateTooLarge, render_all  # noqa: E402
from stacksets.config import MAX_PER_USER_SERVERS, parse_config  # noqa: E402


def best_of(runs: int, function) -> tuple[float, float]:
    """The shortest (CPU seconds, wall seconds) of `runs` calls."""
    cpu, wall = [], []
    for _ in range(runs):
        start_cpu, start_wall = time.process_time(), time.perf_counter()
        function()
        cpu.append(time.process_time() - start_cpu)
        wall.append(time.perf_counter() - start_wall)
    return min(cpu), min(wall)


def main() -> int:
    data = yaml.safe_load((ROOT / "config.yaml").read_text())
    example = parse_config(data)
    big = copy.deepcopy(data)
    users = {f"user{i:02d}": {"email": f"u{i}@example.com", "uid": 4000 + i} for i in range(MAX_PER_USER_SERVERS)}
    big["instances"]["prod"]["users"] = users
    large = parse_config(big)

    def render_large() -> None:
        try:
            render_all(large)
        except TemplateTooLarge as error:  # still timed: the size check is part of rendering
            print(f"note: {error}")

    results = {
        "example config": (best_of(5, lambda: render_all(example)), 0.3),
        f"per_user instance with {MAX_PER_USER_SERVERS} users": (best_of(3, render_large), 1.5),
    }
    failed = False
    for name, ((cpu, wall), target) in results.items():
        verdict = "ok" if cpu <= target else "MISSED"
        failed |= cpu > target
        print(f"{name:34} {cpu * 1000:8.1f} ms CPU {wall * 1000:8.1f} ms wall  "
              f"(target {target * 1000:.0f} ms CPU)  {verdict}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
