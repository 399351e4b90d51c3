"""The admin API's failure limit per client address, on a fake clock (pure)."""

from __future__ import annotations

from api.admin import FailureLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_five_failures_in_a_minute_block_the_address_until_the_oldest_ages_out() -> None:
    clock = Clock()
    limiter = FailureLimiter(limit=5, window=60.0, clock=clock)
    for _ in range(4):
        limiter.failed("10.0.0.1")
        clock.now += 5
    assert limiter.retry_after("10.0.0.1") is None  # four failures: may still try
    limiter.failed("10.0.0.1")  # the fifth, at t=1020
    assert limiter.retry_after("10.0.0.1") == 40.0  # the first (t=1000) ages out at t=1060
    assert limiter.retry_after("10.0.0.2") is None  # per address
    clock.now = 1060.0
    assert limiter.retry_after("10.0.0.1") is None
    limiter.failed("10.0.0.1")  # back to five within the window (1005..1060)
    assert limiter.retry_after("10.0.0.1") == 5.0


def test_old_failures_are_forgotten_and_tracked_addresses_are_bounded() -> None:
    clock = Clock()
    limiter = FailureLimiter(limit=2, window=10.0, max_tracked=3, clock=clock)
    limiter.failed("a")
    clock.now += 11
    limiter.failed("a")
    assert limiter.retry_after("a") is None  # the first one is out of the window
    for client in ("b", "c", "d"):
        limiter.failed(client)
        limiter.failed(client)
    # "a" failed longest ago and was dropped to stay within three addresses; the others are blocked.
    assert [limiter.retry_after(c) is not None for c in ("b", "c", "d")] == [True, True, True]
    assert limiter.retry_after("a") is None
