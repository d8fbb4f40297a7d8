"""Progress throttling ("at most once per second or per 1 %"), rate and ETA — with explicit times."""

from __future__ import annotations

import pytest

from mtv.transfer.progress import ProgressThrottle, RateWindow, eta_seconds

TOTAL = 1000 * 100  # 1 % = 1000 bytes
COPYING = 2


def test_first_event_phase_changes_and_the_end_are_always_published() -> None:
    t = ProgressThrottle()
    assert t.due(0.0, 0, TOTAL, phase=1)
    assert t.due(0.01, 0, TOTAL, phase=COPYING)  # phase change
    assert not t.due(0.02, 10, TOTAL, phase=COPYING)
    assert t.due(0.03, TOTAL, TOTAL, phase=COPYING)  # 100 %
    assert not t.due(0.04, TOTAL, TOTAL, phase=COPYING)


def test_a_slow_copy_reports_once_per_second() -> None:
    t = ProgressThrottle()
    published = [now / 10 for now in range(0, 101) if t.due(now / 10, now, TOTAL, COPYING)]  # 10 ticks per second
    gaps = [b - a for a, b in zip(published, published[1:], strict=False)]
    assert all(gap == pytest.approx(1.0) for gap in gaps)
    assert len(published) == 11


def test_a_fast_copy_reports_per_percent_at_most() -> None:
    t = ProgressThrottle()
    # 100 ticks within 0.1 s, 0.5 % per tick: an event every second tick (1 %), never more.
    published = [i for i in range(0, 101) if t.due(i / 1000, i * 500, TOTAL, COPYING)]
    assert published == list(range(0, 101, 2))


def test_rate_over_a_sliding_window() -> None:
    w = RateWindow(window=5.0)
    assert w.rate() == 0.0
    for second in range(11):
        w.add(float(second), second * 100)  # 100 B/s ...
    assert w.rate() == pytest.approx(100.0)
    for second in range(11, 21):
        w.add(float(second), 1000 + (second - 10) * 1000)  # ... then 1000 B/s
    assert w.rate() == pytest.approx(1000.0)  # the old rate has left the window


def test_rate_needs_a_meaningful_span() -> None:
    w = RateWindow()
    w.add(0.0, 0)
    w.add(0.05, 10_000)
    assert w.rate() == 0.0


def test_eta() -> None:
    assert eta_seconds(250, 1000, 50.0) == pytest.approx(15.0)
    assert eta_seconds(250, 1000, 0.0) == -1.0  # unknown
    assert eta_seconds(1000, 1000, 0.0) == 0.0
