"""The token bucket, driven by a fake clock."""

from __future__ import annotations

import pytest

from mtv.transfer.throttle import TokenBucket


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_burst_is_free_then_the_rate_applies() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=1000, burst=500, clock=clock)
    assert bucket.reserve(500) == 0.0  # the initial burst
    assert bucket.reserve(100) == pytest.approx(0.1)  # 100 bytes of debt at 1000 B/s
    clock.now += 0.1
    assert bucket.reserve(100) == pytest.approx(0.1)  # the debt was paid by waiting; new debt


def test_refill_is_capped_at_the_burst() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=1000, burst=200, clock=clock)
    bucket.reserve(200)
    clock.now += 60  # idle for a minute: only `burst` accumulates
    assert bucket.reserve(200) == 0.0
    assert bucket.reserve(1000) == pytest.approx(1.0)


def test_a_reservation_larger_than_the_burst_waits_for_its_size() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=10 << 20, clock=clock)  # burst defaults to a quarter second
    assert bucket.burst == (10 << 20) / 4
    delay = bucket.reserve(8 << 20)  # one 8 MiB chunk at 10 MiB/s
    assert delay == pytest.approx((8 - 2.5) / 10)


def test_sustained_throughput_matches_the_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=4 << 20, clock=clock)
    start, sent = clock.now, 0
    for _ in range(200):  # readers take 256 KiB pieces and wait as told
        clock.now += bucket.reserve(256 << 10)
        sent += 256 << 10
    assert sent / (clock.now - start) == pytest.approx(4 << 20, rel=0.03)


def test_rate_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        TokenBucket(rate=0)
