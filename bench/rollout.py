"""Rollout benchmark: the orchestrator with the CLI's own defaults against the AWS model, in simulated time.

An organization of N instance accounts (default 50) spread over R regions (default 3, the first R of eu-west-1,
eu-central-1, us-east-1): one zone, one delegation, one data, one storage and one instance StackSet per instance
account (the example's dev StackSets, renamed), plus bootstrap, central, data and logs, 5N + 4 StackSets. The AWS model
(`stacksets.awsmodel`) answers real boto3 clients: StackSets operations run in simulated time in per-Region batches of
MaxConcurrentPercentage, instance stacks are created from the committed templates, callers are throttled over the
model's token bucket, and create_stack_set is refused past the StackSets quota (raised here when 5N + 4 needs it).

Per run it prints the makespan over the critical path (the longest dependency chain of the operation durations the
model computed), the same for the plan deployed one StackSet at a time, the orchestrator's own CPU (process CPU minus
the model's request handling and the simulated clock's wake-ups), peak RSS, the calls of a no-op deploy and of a
`diff` (what `plan` runs), the throttles the model answered, and PASS/FAIL per target. With several --accounts each
size runs in a child process (so peak RSS is per size) and the CPU-per-StackSet growth is judged across them.

    .venv/bin/python bench/rollout.py [--accounts 50 [200 500]] [--regions 3] [--json] [--skip-sequential]

Measured on the 2-core shared host, one run per size, 3 regions, CLI defaults (8 workers; polls every 15 s with a few
operations in flight, up to 120 s with hundreds; requests paced at 9/s per client), `--accounts 50`:

    accounts StackSets makespan/CP sequential/CP orch CPU (per StackSet) peak RSS  no-op calls/StackSet throttles
    50       254       1.031       50.9          6.6 s (25.9 ms)         222 MB    2.82, 0 writes       5

and `--accounts 50 200 500` before each instance had its delegation and storage StackSets (3N + 4 StackSets, one
network StackSet delegating every zone):

    50       154       1.040       40.6          3.9 s (25.5 ms)         227 MB    2.70, 0 writes       50
    200      604       1.201       154.6         15.2 s (25.2 ms)        484 MB    2.69, 0 writes       55
    500      1504      1.579       370.4         45.9 s (30.5 ms)        1013 MB   2.69, 0 writes       46

Past 50 accounts the rollout is bound by the request rate of the one admin account's CloudFormation endpoint, which
every StackSet's calls and polls share (the model throttles past 10/s with a burst of 40 per account, Region and
service, a conservative guess: AWS publishes no rate): 1,504 StackSets need about 17,600 calls for their first
deploy, 33 minutes at 9/s, against a 25-minute critical path. Peak RSS is the whole process, the model's 1,504
instance stacks (61,000 resources) and its call log included; the model also takes 88 % of the CPU.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import deploy as cli  # noqa: E402
from stacksets import naming  # noqa: E402
from stacksets.aws import Clients  # noqa: E402
from stacksets.awsmodel.adapter import CLOSED_ENDPOINT, ModelError  # noqa: E402
from stacksets.awsmodel.clock import SimClock  # noqa: E402
from stacksets.awsmodel.model import AwsModel, snake  # noqa: E402
from stacksets.awsmodel.scenario import Limits, Scenario  # noqa: E402
from stacksets.config import Config, load_config  # noqa: E402
from stacksets.executor import Executor, Options, Report  # noqa: E402
from stacksets.plan import Node, OutputRef, Plan, Targets, build_plan  # noqa: E402
from stacksets.quotas import quota_warnings  # noqa: E402
from stacksets.run import CURRENT_STACKSET  # noqa: E402

ALL_REGIONS = ("eu-west-1", "eu-central-1", "us-east-1")
# Simulated seconds one stack instance takes, per kind of StackSet (the model batches them per Region).
SECONDS = {"bootstrap": 60, "central": 150, "data": 90, "logs": 30, "zone": 50, "delegation": 60,
           "instance-data": 150, "storage": 300, "instance": 900}  # fmt: skip
MAKESPAN_TARGET = 1.05
PEAK_MB_TARGET = 500
# The host's run-to-run noise is about ±30 % (review/performance.md), so CPU per StackSet may grow by that much from
# the smallest to the largest size before growth counts as faster than the number of StackSets.
CPU_GROWTH_TOLERANCE = 1.3
NOOP_READS_PER_STACKSET = 3


def instance_accounts(n: int) -> list[str]:
    return [f"{700000000000 + i:012d}" for i in range(n)]


def instance_name(i: int) -> str:
    return f"i{i:03d}"


def kind(name: str) -> str:
    fixed = {naming.BOOTSTRAP: "bootstrap", naming.CENTRAL: "central", naming.DATA: "data", naming.LOGS: "logs"}
    if name in fixed:
        return fixed[name]
    for suffix, kind_of in (("-zone", "zone"), ("-delegation", "delegation"), ("-data", "instance-data"),
                            ("-storage", "storage")):  # fmt: skip
        if name.endswith(suffix):
            return kind_of
    return "instance"


# --------------------------------------------------------------------------------------------------------------------
# The workload


def bench_plan(cfg: Config, n: int, regions: tuple[str, ...]) -> Plan:
    base = build_plan(cfg, ROOT / "templates")
    ous = tuple(cfg.stacksets.bootstrap.organizational_units)
    # The bootstrap stays in the default region, as build_plan has it: its reader role is global (IAM), and the model
    # fails a second region's instance with "Role with name rstudio-deploy-reader already exists", as AWS would. The
    # old bench spread it over every region; with parallel regions that changed nothing but the instance count.
    nodes = {name: base.nodes[name] for name in (naming.BOOTSTRAP, naming.CENTRAL, naming.DATA)}
    # the logs policy in every instance account and Region, as build_plan targets it
    logs = base.nodes[naming.LOGS]
    nodes[naming.LOGS] = replace(logs, targets=Targets(regions=regions, accounts=tuple(instance_accounts(n)),
                                                       organizational_units=ous))  # fmt: skip
    for i, account in enumerate(instance_accounts(n)):
        region = regions[i % len(regions)]
        instance = instance_name(i)
        name = naming.instance_stackset(instance)
        zone, delegation = naming.zone_stackset(instance), naming.delegation_stackset(instance)
        data, storage = naming.instance_data_stackset(instance), naming.storage_stackset(instance)
        targets = Targets(regions=(region,), accounts=(account,), organizational_units=ous)
        dev = {kind: base.nodes[f"rstudio-dev{kind}"] for kind in ("", "-zone", "-delegation", "-data", "-storage")}
        nodes[zone] = replace(dev["-zone"], name=zone, targets=targets, **_renamed(dev["-zone"], i, account))
        # the delegations share the network account, the data StackSets the data account, as build_plan has them
        name_servers = OutputRef(zone, "NameServers", account, region)
        nodes[delegation] = replace(dev["-delegation"], name=delegation, depends_on=(zone,),
                                    parameters=(("NameServers", name_servers),),
                                    **_renamed(dev["-delegation"], i, account))  # fmt: skip
        nodes[data] = replace(dev["-data"], name=data, **_renamed(dev["-data"], i, account))
        nodes[storage] = replace(dev["-storage"], name=storage, targets=targets,
                                 **_renamed(dev["-storage"], i, account))  # fmt: skip
        stored = tuple((key, replace(ref, stackset=storage, account=account, region=region))
                       for key, ref in dev[""].parameters)  # fmt: skip
        # the image step is left out (the model would build images), so the instances wait for central directly
        nodes[name] = replace(dev[""], name=name, targets=targets, parameters=stored, **_renamed(dev[""], i, account),
                              depends_on=tuple(sorted((zone, delegation, data, storage, naming.LOGS,
                                                       naming.CENTRAL))))  # fmt: skip
    return Plan(dict(sorted(nodes.items())))


def chained(plan: Plan) -> Plan:
    """The same StackSets one after another: since parked StackSets hold no worker, a pool of one no longer
    serialises the rollout, so each StackSet depends on the one before it in plan order instead."""
    order = plan.order()
    return Plan({name: replace(plan.nodes[name], depends_on=(order[i - 1],) if i else ()) for i, name in
                 enumerate(order)})  # fmt: skip


def _renamed(node: Node, i: int, account: str) -> dict[str, str]:
    """A dev template for instance i, as `render` would name it without rendering hundreds of templates: the data
    StackSets share the data account (bucket, role and database names must differ), and the model's ACM validates a
    certificate only in the zone a delegation StackSet delegates (so each instance needs its own domain)."""
    instance = instance_name(i)
    renamed = node.template_body.replace("rstudio-dev", f"rstudio-{instance}").replace("rstudio_dev",
                                                                                        f"rstudio_{instance}")
    renamed = renamed.replace("dev.analytics.example.com", f"{instance}.analytics.example.com")
    renamed = renamed.replace("555555555555", account)
    return {"template_body": renamed, "template_sha256": _sha256(renamed)}


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def scenario(cfg: Config, plan: Plan) -> tuple[Scenario, str]:
    """The instance accounts in the second bootstrap OU, the per-kind durations, and the StackSets quota raised when
    `plan` would warn about it (the model would refuse the StackSets past it)."""
    limits = Limits()
    note = ""
    if quota_warnings(len(plan.nodes), {}, limits):
        raised = (len(plan.nodes) * 10 // 9 // 1000 + 1) * 1000
        note = (f"raised limits.stack_sets_per_administrator from {limits.stack_sets_per_administrator} to {raised} "
                f"for {len(plan.nodes)} StackSets (plan would warn, and the model refuse, without it)")  # fmt: skip
        limits = Limits(stack_sets_per_administrator=raised)
    ou = cfg.stacksets.bootstrap.organizational_units[1]
    accounts = {account: {"ou": ou} for account in instance_accounts(sum(kind(n) == "zone" for n in plan.nodes))}
    durations = {name: float(SECONDS[kind(name)]) for name in plan.nodes}
    return Scenario.model_validate({"accounts": accounts, "durations": durations,
                                    "limits": limits.model_dump()}), note  # fmt: skip


# --------------------------------------------------------------------------------------------------------------------
# Measuring


@dataclass
class Meter:
    """CPU the model spends serving requests and the simulated clock spends waking up, and the throttles answered:
    what the benchmark itself costs, subtracted so the CPU left is the orchestrator's (and boto3's)."""

    model_cpu: float = 0.0
    clock_cpu: float = 0.0
    throttles: int = 0
    # requests the model answered (not throttled), by the StackSet the executor was working on when it made them
    answered: dict[str, Counter[str]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def install(self) -> None:
        handle, sleep = AwsModel.handle, SimClock.sleep

        def metered_handle(model: AwsModel, *args: Any) -> dict[str, Any]:
            start = time.thread_time()
            try:
                answer = handle(model, *args)
                with self.lock:
                    self.answered.setdefault(CURRENT_STACKSET.get(), Counter())[snake(args[1])] += 1
                return answer
            except ModelError as error:
                if error.code == "Throttling":
                    with self.lock:
                        self.throttles += 1
                raise
            finally:
                spent = time.thread_time() - start
                with self.lock:
                    self.model_cpu += spent

        def metered_sleep(clock: SimClock, seconds: float) -> None:
            start = time.thread_time()
            try:
                sleep(clock, seconds)
            finally:
                spent = time.thread_time() - start
                with self.lock:
                    self.clock_cpu += spent

        AwsModel.handle = metered_handle  # type: ignore[method-assign]
        SimClock.sleep = metered_sleep  # type: ignore[method-assign]

    def snapshot(self) -> tuple[float, float, int]:
        with self.lock:
            return self.model_cpu, self.clock_cpu, self.throttles

    def answered_since(self, before: dict[str, Counter[str]]) -> dict[str, Counter[str]]:
        with self.lock:
            return {name: calls - before.get(name, Counter()) for name, calls in self.answered.items()}

    def answered_now(self) -> dict[str, Counter[str]]:
        with self.lock:
            return {name: Counter(calls) for name, calls in self.answered.items()}


METER = Meter()


@dataclass
class Phase:
    """One executor call: wall and CPU, the model's and clock's share, calls, throttles and simulated seconds."""

    wall_s: float
    process_cpu_s: float
    model_cpu_s: float
    clock_cpu_s: float
    calls: int
    writes: int
    throttles: int
    simulated_s: float

    @property
    def orchestrator_cpu_s(self) -> float:
        return self.process_cpu_s - self.model_cpu_s - self.clock_cpu_s


def measured(model: AwsModel, action: Callable[[], Any]) -> tuple[Any, Phase]:
    calls, writes = len(model.log), sum(model.mutating_calls().values())
    model_cpu, clock_cpu, throttles = METER.snapshot()
    wall, cpu, simulated = time.perf_counter(), time.process_time(), model.clock()
    result = action()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    model_after, clock_after, throttles_after = METER.snapshot()
    return result, Phase(wall, cpu, model_after - model_cpu, clock_after - clock_cpu, len(model.log) - calls,
                         sum(model.mutating_calls().values()) - writes, throttles_after - throttles,
                         model.clock() - simulated)  # fmt: skip


def cli_options(state_path: Path) -> Options:
    """Options exactly as `deploy.py deploy` builds them from its own argument defaults."""
    args = cli.build_parser().parse_args(["deploy"])
    return Options(timeout_s=args.timeout, max_workers=args.workers, state_path=state_path,
                   prune=getattr(args, "prune", False))  # fmt: skip


def executor(model: AwsModel, cfg: Config, state_path: Path, seed: int) -> Executor:
    # a fresh Clients per executor, as every CLI command is a new process (reader roles are assumed again)
    clients = Clients(cfg.default_region, endpoint_url=CLOSED_ENDPOINT, credentials=model.admin_credentials,
                      on_client=model.install, sleep=model.clock.sleep)  # fmt: skip
    # the CLI's jitter source, seeded so a rerun retries throttled calls after the same simulated pauses
    return Executor(clients, options=cli_options(state_path), clock=model.clock, sleep=model.clock.sleep,
                    random=random.Random(seed).random)  # fmt: skip


def deployed(report: Report, what: str) -> Report:
    if not report.ok:
        failed = [(n, r.state.value, r.message) for n, r in report.results.items() if r.message][:5]
        raise SystemExit(f"bench {what} failed: {failed}")
    return report


def operation_seconds(model: AwsModel) -> dict[str, float]:
    """Per StackSet, the simulated seconds of every operation the model ran for it."""
    seconds: Counter[str] = Counter()
    for stackset in model.world.stacksets.sets.values():
        for operation in stackset.operations.values():
            if operation.started is not None and operation.end is not None:
                seconds[stackset.name] += operation.end - operation.started
    return dict(seconds)


def critical_path(plan: Plan, seconds: dict[str, float]) -> float:
    finish: dict[str, float] = {}
    for name in plan.order():
        finish[name] = max((finish[d] for d in plan.nodes[name].depends_on), default=0.0) + seconds.get(name, 0.0)
    return max(finish.values())


def output_accounts(plan: Plan) -> Counter[str]:
    """Per producer StackSet, the account/region pairs its dependents read outputs from."""
    pairs = {(ref.stackset, ref.account, ref.region) for node in plan.nodes.values() for ref in node.output_refs()}
    return Counter(stackset for stackset, _, _ in pairs)


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def bench(n: int, region_count: int, skip_sequential: bool, seed: int) -> dict[str, Any]:
    cfg = load_config(ROOT / "config.yaml")
    regions = ALL_REGIONS[:region_count]
    plan = bench_plan(cfg, n, regions)
    rehearsal, quota_note = scenario(cfg, plan)
    stacksets = len(plan.nodes)
    result: dict[str, Any] = {"accounts": n, "regions": len(regions), "stacksets": stacksets,
                              "workers": cli_options(Path("x")).max_workers, "quota": quota_note}
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp) / "state.json"
        model = AwsModel.for_config(cfg, rehearsal, clock=SimClock())
        report, first = measured(model, lambda: executor(model, cfg, state, seed).deploy(plan))
        deployed(report, "deploy")
        seconds = operation_seconds(model)
        path = critical_path(plan, seconds)
        makespan = report.elapsed
        before = METER.answered_now()
        noop, second = measured(model, lambda: executor(model, cfg, state, seed).deploy(plan))
        deployed(noop, "no-op deploy")
        answered = METER.answered_since(before)
        _, diff = measured(model, lambda: executor(model, cfg, state, seed).diff(plan))
        result["peak_mb"] = peak_mb()
        operations = Counter(len(s.operations) for s in model.world.stacksets.sets.values())
        del model, report
        sequential = None
        if not skip_sequential:
            model = AwsModel.for_config(cfg, rehearsal, clock=SimClock())
            line = chained(plan)
            chain, sequential = measured(model, lambda: executor(model, cfg, Path(tmp) / "seq.json", seed).deploy(line))
            deployed(chain, "sequential deploy")
            result["sequential_makespan_s"] = chain.elapsed
            del model
    # throttled attempts are counted apart (Phase.throttles): the budget is about what the orchestrator asks for
    reads = {name: sum(answered.get(name, Counter()).values()) for name in plan.nodes}
    budget = {name: NOOP_READS_PER_STACKSET + output_accounts(plan)[name] for name in plan.nodes}
    over = {name: (reads[name], budget[name]) for name in plan.nodes if reads[name] > budget[name]}
    per_api: Counter[str] = Counter()
    for calls in answered.values():
        per_api.update(calls)
    unattributed = sum(calls.total() for name, calls in answered.items() if name not in plan.nodes)
    result.update({
        "critical_path_s": path, "makespan_s": makespan, "ratio": makespan / path,
        "operations_per_stackset": dict(sorted(operations.items())),
        "deploy": vars(first) | {"orchestrator_cpu_s": first.orchestrator_cpu_s},
        "cpu_per_stackset_ms": first.orchestrator_cpu_s / stacksets * 1000,
        "noop": vars(second) | {"orchestrator_cpu_s": second.orchestrator_cpu_s},
        "noop_calls_per_stackset": second.calls / stacksets,
        "noop_answered_per_stackset": sum(per_api.values()) / stacksets,
        "noop_answered": sum(per_api.values()), "noop_unattributed": unattributed,
        "noop_read_budget": sum(budget.values()),
        "noop_over_budget": dict(sorted(over.items())[:5]), "noop_over_budget_count": len(over),
        "noop_by_api": dict(sorted(per_api.items())),
        "diff": vars(diff) | {"orchestrator_cpu_s": diff.orchestrator_cpu_s},
        "throttles": first.throttles + second.throttles + diff.throttles,
    })  # fmt: skip
    if sequential is not None:
        result["sequential"] = vars(sequential) | {"orchestrator_cpu_s": sequential.orchestrator_cpu_s}
        result["sequential_ratio"] = result["sequential_makespan_s"] / path
    return result


# --------------------------------------------------------------------------------------------------------------------
# Targets and output


def targets(runs: list[dict[str, Any]]) -> list[tuple[str, bool | None, str]]:
    """(target, PASS/FAIL or None when it cannot be judged from these runs, measured value)."""
    checks: list[tuple[str, bool | None, str]] = []
    for run in runs:
        at = f"{run['accounts']} accounts"
        checks.append((f"makespan <= {MAKESPAN_TARGET} x critical path ({at})", run["ratio"] <= MAKESPAN_TARGET,
                       f"{run['ratio']:.3f}"))  # fmt: skip
        checks.append((f"peak memory < {PEAK_MB_TARGET} MB ({at})", run["peak_mb"] < PEAK_MB_TARGET,
                       f"{run['peak_mb']:.0f} MB"))  # fmt: skip
        checks.append((f"0 writes on no-op ({at})", run["noop"]["writes"] == 0, f"{run['noop']['writes']} writes"))
        checks.append((f"no-op reads <= {NOOP_READS_PER_STACKSET}/StackSet + 1/output account, in total ({at})",
                       run["noop_answered"] <= run["noop_read_budget"],
                       f"{run['noop_answered']} answered calls, budget {run['noop_read_budget']}"))  # fmt: skip
        worst = ", ".join(f"{name} {have}/{allowed}" for name, (have, allowed) in run["noop_over_budget"].items())
        checks.append((f"... and for every StackSet ({at})", run["noop_over_budget_count"] == 0,
                       f"{run['noop_over_budget_count']} over: {worst}" if worst else "none over"))  # fmt: skip
        checks.append((f"request-rate limits respected, throttles retried ({at})", True,
                       f"{run['throttles']} throttles answered, every call succeeded"))  # fmt: skip
    per = [(run["stacksets"], run["cpu_per_stackset_ms"]) for run in sorted(runs, key=lambda r: r["stacksets"])]
    shown = ", ".join(f"{ms:.2f} ms at {count}" for count, ms in per)
    if len(per) > 1:
        growth = per[-1][1] / per[0][1]
        checks.append((f"orchestrator CPU grows no faster than StackSets (per StackSet x{CPU_GROWTH_TOLERANCE} at "
                       "most)", growth <= CPU_GROWTH_TOLERANCE, f"x{growth:.2f}: {shown}"))  # fmt: skip
    else:
        checks.append(("orchestrator CPU grows no faster than StackSets", None, f"{shown}; run several --accounts"))
    return checks


def text(run: dict[str, Any]) -> str:
    d, noop, diff = run["deploy"], run["noop"], run["diff"]
    lines = [f"{run['accounts']} instance accounts x {run['regions']} regions, {run['stacksets']} StackSets, "
             f"{run['workers']} workers (CLI default)"]  # fmt: skip
    if run["quota"]:
        lines.append(f"  scenario: {run['quota']}")
    lines.append(f"  orchestrator makespan / critical path: {run['ratio']:.3f} ({run['makespan_s'] / 60:.1f} min / "
                 f"{run['critical_path_s'] / 60:.1f} min)")  # fmt: skip
    if "sequential_ratio" in run:
        lines.append(f"  sequential makespan / critical path: {run['sequential_ratio']:.2f} "
                     f"({run['sequential_makespan_s'] / 60:.0f} min)")  # fmt: skip
    lines += [
        f"  deploy: orchestrator CPU {d['orchestrator_cpu_s']:.2f} s ({run['cpu_per_stackset_ms']:.2f} ms per "
        f"StackSet; process {d['process_cpu_s']:.2f} s - model {d['model_cpu_s']:.2f} s - clock "
        f"{d['clock_cpu_s']:.2f} s), "
        f"wall {d['wall_s']:.1f} s, {d['calls']} calls, {d['writes']} writes, {d['throttles']} throttles",
        f"  peak RSS (deploy, no-op, diff): {run['peak_mb']:.0f} MB",
        f"  no-op deploy: {run['noop_answered']} calls answered ({run['noop_answered_per_stackset']:.2f} per "
        f"StackSet) + {noop['throttles']} throttled attempts = {noop['calls']} requests "
        f"({run['noop_calls_per_stackset']:.2f} per StackSet), {noop['writes']} writes, "
        f"{noop['simulated_s']:.0f} simulated s, orchestrator CPU "
        f"{noop['orchestrator_cpu_s']:.2f} s, wall {noop['wall_s']:.1f} s",
        "    " + ", ".join(f"{api} {count}" for api, count in run["noop_by_api"].items()),
        f"  diff (plan): {diff['calls']} calls, {diff['throttles']} throttles, {diff['simulated_s']:.0f} simulated s, "
        f"orchestrator CPU {diff['orchestrator_cpu_s']:.2f} s, wall {diff['wall_s']:.1f} s",
        f"  throttles the model answered: {run['throttles']}",
    ]  # fmt: skip
    if "sequential" in run:
        lines.append(f"  sequential deploy: wall {run['sequential']['wall_s']:.1f} s")
    return "\n".join(lines)


def print_targets(checks: list[tuple[str, bool | None, str]]) -> None:
    print("\ntargets:")
    for what, ok, value in checks:
        print(f"  {'PASS' if ok else 'FAIL' if ok is not None else 'n/a '}  {what}: {value}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, nargs="+", default=[50], help="instance accounts (several: one child "
                        "process per size)")  # fmt: skip
    parser.add_argument("--regions", type=int, default=3, choices=range(1, len(ALL_REGIONS) + 1))
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--skip-sequential", action="store_true", help="skip the one-StackSet-at-a-time deploy")
    parser.add_argument("--seed", type=int, default=0, help="seed of the retry jitter (default: %(default)s)")
    args = parser.parse_args()
    started = time.perf_counter()
    if len(args.accounts) == 1:
        METER.install()
        runs = [bench(args.accounts[0], args.regions, args.skip_sequential, args.seed)]
        runs[0]["wall_s"] = time.perf_counter() - started
    else:
        runs = []
        for n in args.accounts:
            command = [sys.executable, __file__, "--accounts", str(n), "--regions", str(args.regions), "--json",
                       "--seed", str(args.seed), *(["--skip-sequential"] if args.skip_sequential else [])]  # fmt: skip
            runs += json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)["runs"]
    checks = targets(runs)
    if args.json:
        print(json.dumps({"runs": runs, "targets": [{"target": what, "pass": ok, "value": value}
                                                    for what, ok, value in checks]}, indent=2))  # fmt: skip
        return
    print("\n\n".join(f"{text(run)}\n  wall time of this size: {run['wall_s']:.0f} s" for run in runs))
    print_targets(checks)


if __name__ == "__main__":
    main()
