"""Client-side pacing of AWS requests: each client (one account, Region and service) sends at most `rate` requests
per second, halving the rate when AWS throttles it and creeping back up while it does not (additive increase,
multiplicative decrease, the scheme of botocore's adaptive retry mode). AWS publishes no request rates for these APIs
and throttles per account and Region; a throttled request costs a retry and a worker's time, so a rollout of 1,500
StackSets that bursts its first calls spends more time throttled than working.

Time comes from the run's injected clock and sleep, so the pacing works in simulated time too.
"""

from __future__ import annotations

import threading
from typing import Callable

# requests per second per client, and the bucket: 90 % of a token bucket of 10/s and 40 (the shape the AWS model
# assumes, AWS publishing none), so that pacing and a bucket of that shape never meet at the same instant
START_RATE = 9.0
MIN_RATE = 0.5
BURST = 36.0
RECOVERY = 0.1  # requests per second regained after each unthrottled request


class Pacer:
    def __init__(self, clock: Callable[[], float], rate: float = START_RATE, burst: float = BURST) -> None:
        self.clock = clock
        self.rate, self.ceiling, self.burst = rate, rate, burst
        self.tokens = burst
        self.updated = clock()
        self._lock = threading.Lock()

    def reserve(self) -> float:
        """Take one request's token; the seconds to wait before sending it (0 when one is available)."""
        with self._lock:
            now = self.clock()
            self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
            self.updated = now
            self.tokens -= 1.0
            return 0.0 if self.tokens >= 0 else -self.tokens / self.rate

    def throttled(self) -> None:
        with self._lock:
            self.rate = max(MIN_RATE, self.rate / 2)

    def answered(self) -> None:
        with self._lock:
            self.rate = min(self.ceiling, self.rate + RECOVERY)
