"""Rollout benchmark: how close the readiness-driven executor gets to the critical path, on a simulated clock.

An organization with 50 instance accounts spread over 3 regions: one zone, one data and one instance StackSet per
instance account (the example's dev StackSets, renamed), plus bootstrap, central, data and network; 154 StackSets.
Operations take realistic simulated time per stack instance (below), batched by the rollout's max concurrency.
The same plan is deployed by the orchestrator (readiness-driven, bounded pool) and strictly one StackSet after another;
both makespans are divided by the critical path (the longest dependency chain of operation durations). Then a second
deploy of the same plan shows the API calls each StackSet costs when nothing changed.

    .venv/bin/python bench/rollout.py [--workers 8]
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from collections import Counter
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from stacksets.config import load_config  # noqa: E402
from stacksets.executor import Executor, Options, Report  # noqa: E402
from stacksets.plan import Node, OutputRef, Override, Plan, Targets, build_plan  # noqa: E402
from tests.fake_aws import FakeAws, SimClock  # noqa: E402

INSTANCES = 50
REGIONS = ("eu-west-1", "eu-central-1", "us-east-1")
OUS = ("ou-ab12-11111111", "ou-ab12-22222222")
TEAMS = "ou-ab12-33333333"
CENTRAL, NETWORK, DATA = "222222222222", "333333333333", "444444444444"
# Simulated seconds one stack instance takes, per kind of StackSet (create; updates and deletes alike).
SECONDS = {"bootstrap": 60, "central": 150, "data": 90, "network": 60, "zone": 50, "instance-data": 150,
           "instance": 900}  # fmt: skip
MAX_CONCURRENT_PERCENTAGE = 25


def kind(name: str) -> str:
    for suffix in ("bootstrap", "central", "network"):
        if name == f"rstudio-{suffix}":
            return suffix
    if name == "rstudio-data":
        return "data"
    if name.endswith("-zone"):
        return "zone"
    if name.endswith("-data"):
        return "instance-data"
    return "instance"


def operation_seconds(stackset: str, action: str, pairs: int) -> float:
    """Regions run in parallel; inside one, MaxConcurrentPercentage (rounded down, at least 1) instances at once."""
    if action == "detect_stack_set_drift" or pairs == 0:
        return 0.0
    per_region = math.ceil(pairs / (len(REGIONS) if kind(stackset) == "bootstrap" else 1))
    batch = max(1, per_region * MAX_CONCURRENT_PERCENTAGE // 100)
    return math.ceil(per_region / batch) * SECONDS[kind(stackset)]


def accounts() -> list[str]:
    return [f"{700000000000 + i:012d}" for i in range(INSTANCES)]


def bench_plan() -> Plan:
    base = build_plan(load_config(ROOT / "config.yaml"), ROOT / "templates")
    nodes = {n: base.nodes[n] for n in ("rstudio-bootstrap", "rstudio-central", "rstudio-data")}
    # the bootstrap's reader role is global (IAM), but for the bench it also spans the three regions
    nodes["rstudio-bootstrap"] = replace(base.nodes["rstudio-bootstrap"],
                                         targets=Targets(regions=REGIONS, organizational_units=OUS))  # fmt: skip
    delegations = []
    for i, account in enumerate(accounts()):
        region = REGIONS[i % len(REGIONS)]
        name = f"rstudio-i{i:02d}"
        targets = Targets(regions=(region,), accounts=(account,), organizational_units=OUS)
        nodes[f"{name}-zone"] = replace(base.nodes["rstudio-dev-zone"], name=f"{name}-zone", targets=targets)
        nodes[f"{name}-data"] = replace(base.nodes["rstudio-dev-data"], name=f"{name}-data")
        nodes[name] = replace(
            base.nodes["rstudio-dev"],
            name=name,
            targets=targets,
            depends_on=(f"{name}-zone", "rstudio-network", f"{name}-data", "rstudio-central"),
        )
        delegations.append((f"I{i:02d}NameServers", OutputRef(f"{name}-zone", "NameServers", account, region)))
    network = base.nodes["rstudio-network"]
    nodes["rstudio-network"] = replace(network, depends_on=tuple(sorted(n for n in nodes if n.endswith("-zone"))),
                                       overrides=(Override(NETWORK, network.targets.regions[0],
                                                           tuple(delegations)),))  # fmt: skip
    return Plan(nodes)


def node_seconds(node: Node) -> float:
    pairs = len(node.targets.regions) * (len(node.targets.accounts) or INSTANCES + 3)
    return operation_seconds(node.name, "create_stack_instances", pairs)


def critical_path(plan: Plan) -> float:
    finish: dict[str, float] = {}
    for name in plan.order():
        node = plan.nodes[name]
        finish[name] = max((finish[d] for d in node.depends_on), default=0.0) + node_seconds(node)
    return max(finish.values())


def organization() -> dict[str, tuple[list[str], list[str]]]:
    return {OUS[0]: ([CENTRAL, NETWORK, DATA], []), OUS[1]: ([], [TEAMS]), TEAMS: (accounts(), [])}


def run(plan: Plan, workers: int, fake: FakeAws | None = None) -> tuple[Report, FakeAws]:
    fake = fake or FakeAws(SimClock(quiet_s=0.02), organization=organization())
    fake.duration = operation_seconds
    with tempfile.TemporaryDirectory() as state:
        executor = Executor(fake, options=Options(max_workers=workers, state_path=Path(state) / "state.json",
                                                  timeout_s=24 * 3600),
                            clock=fake.clock, sleep=fake.clock.sleep)  # fmt: skip
        report = executor.deploy(plan)
    if not report.ok:
        failed = [(n, r.state.value, r.message) for n, r in report.results.items() if r.message]
        raise SystemExit(f"bench deploy failed: {failed}")
    return report, fake


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--workers", type=int, default=64, help="orchestrator worker pool size (workers mostly sleep between polls)"
    )
    args = parser.parse_args()
    plan = bench_plan()
    path = critical_path(plan)

    parallel, fake = run(plan, args.workers)
    sequential, _ = run(plan, 1)
    print(f"orchestrator makespan / critical path: {parallel.elapsed / path:.2f}")
    print(f"sequential makespan / critical path: {sequential.elapsed / path:.2f}")
    print(f"({len(plan.nodes)} StackSets, {INSTANCES} instance accounts over {len(REGIONS)} regions, "
          f"{args.workers} workers; critical path {path / 60:.0f} min, orchestrator {parallel.elapsed / 60:.0f} min, "
          f"sequential {sequential.elapsed / 60:.0f} min)")  # fmt: skip

    noop, _ = run(plan, args.workers, fake)
    print(f"\nno-op deploy: {sum(noop.calls.values())} mutating calls; API calls per StackSet:")
    total: Counter[str] = Counter()
    for name in plan.order():
        calls = noop.calls_by_stackset.get(name, Counter())
        total.update(calls)
        detail = ", ".join(f"{api} {n}" for api, n in sorted(calls.items()))
        print(f"  {name:24} {sum(calls.values()):3}  {detail}")
    print(f"  {'total':24} {sum(total.values()):3}")


if __name__ == "__main__":
    main()
