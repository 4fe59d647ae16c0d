"""Client-side pacing and the poll cadence: a burst of calls waits its turn instead of being throttled, and the polls
of many operations in flight together stay within a rate."""

from __future__ import annotations

import pytest

from stacksets.awsmodel.clock import ManualClock
from stacksets.calls import call
from stacksets.config import Config
from stacksets.operations import MAX_POLL_CAP_S, MAX_POLL_S, POLLS_PER_S, backoff
from stacksets.pacing import BURST, MIN_RATE, START_RATE, Pacer
from stacksets.run import Options, Run
from tests.awsmodel_helpers import clients_for, model_for, scenario


def run_on(clients, clock) -> Run:
    return Run(clients, Options(), clock=clock, sleep=clock.sleep, random=lambda: 0.5, on_event=lambda e: None,
               total=1)  # fmt: skip


def test_a_burst_past_the_bucket_waits_for_its_tokens() -> None:
    clock = ManualClock()
    pacer = Pacer(clock)
    waits = [pacer.reserve() for _ in range(int(BURST) + 8)]
    assert waits[: int(BURST)] == [0.0] * int(BURST)
    assert waits[-1] == pytest.approx(8 / START_RATE)  # the 8th request past the burst waits 8 tokens' time


def test_throttling_halves_the_rate_and_answers_win_it_back() -> None:
    pacer = Pacer(ManualClock())
    for _ in range(10):
        pacer.throttled()
    assert pacer.rate == MIN_RATE
    for _ in range(1000):
        pacer.answered()
    assert pacer.rate == START_RATE


def test_paced_calls_stay_inside_the_models_request_rate(cfg: Config) -> None:
    """The model throttles past 10 requests/s with a burst of 40 per account, Region and service: 100 calls in a
    row are all answered at their first attempt, spread over simulated seconds."""
    model = model_for(cfg, scenario(limits={"api_requests_per_second": 10, "api_burst": 40}))
    clients = clients_for(model, cfg.default_region)
    run = run_on(clients, model.clock)
    org = clients.client("organizations")
    for _ in range(100):
        call(run, org, "list_roots")
    assert model.calls["list_roots"] == 100  # no attempt was throttled and retried
    assert model.clock() >= (100 - BURST) / START_RATE


def test_the_poll_cap_grows_with_the_operations_polled_at_once() -> None:
    run = run_on(None, ManualClock())
    few = backoff(run)
    assert [next(few) for _ in range(4)] == [MAX_POLL_S] * 4
    many = [backoff(run) for _ in range(int(MAX_POLL_CAP_S * POLLS_PER_S))]
    for polls in many:
        next(polls)  # each now waits: 481 at once
    assert run.waiting == len(many) + 1
    later = [next(many[0]) for _ in range(5)]
    assert later == sorted(later) and later[-1] == MAX_POLL_CAP_S  # doubling up to the raised cap
    for polls in [few, *many]:
        polls.close()
    assert run.waiting == 0
