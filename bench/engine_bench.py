"""How long the AWS model's stack engine takes to create one stack of templates/rstudio-prod.yaml, after the first
(which parses the template). Run: .venv/bin/python bench/engine_bench.py [stacks]"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from stacksets.awsmodel.engine import DefaultEnvironment, StackEngine

ROOT = Path(__file__).resolve().parent.parent
ACCOUNT, REGION = "111111111111", "eu-west-1"


def main(count: int) -> None:
    # The welcome function runs no code here: its custom resource answers as if every mail went out.
    engine = StackEngine(DefaultEnvironment(quotas={"lambda_concurrent_executions": 10**9},
                                            custom_data={"WelcomeEmail": {"Undelivered": "{}"}}))
    zone = (ROOT / "templates" / "rstudio-prod-zone.yaml").read_text(encoding="utf-8")
    prod = (ROOT / "templates" / "rstudio-prod.yaml").read_text(encoding="utf-8")
    engine.create("rstudio-prod-zone", ACCOUNT, REGION, zone, {})
    started = time.perf_counter()
    first = engine.create("prod-0", ACCOUNT, REGION, prod, {})
    first_seconds = time.perf_counter() - started
    # The templates' fixed names (roles, buckets, secrets) allow one stack per account: give each its own account.
    started = time.perf_counter()
    for number in range(1, count):
        account = f"{number:012d}"
        engine.registry.exports[(account, REGION, "rstudio-prod-zone-HostedZoneId")] = ("Z0000000000000", "bench")
        stack = engine.create(f"prod-{number}", account, REGION, prod, {})
        assert stack.status == "CREATE_COMPLETE", stack.status_reason
    per_stack = (time.perf_counter() - started) / max(1, count - 1)
    print(f"first stack (parse included): {first_seconds * 1000:.0f} ms, {first.status}")
    print(f"per stack after the first:    {per_stack * 1000:.1f} ms ({count - 1} stacks, {len(first.resources)} "
          "resources each)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100)
