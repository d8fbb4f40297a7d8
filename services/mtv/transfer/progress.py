"""When to publish DiskTransferProgress and what rate and ETA to put in it. Pure: time is passed in.

The public contract is "at most once per second or per 1 %": an event is due when a second has
passed since the last one (so a slow disk still shows it is alive) or when the copy advanced by
1 % of the disk (so a fast disk shows smooth progress, at most ~100 events). Phase changes and the
final 100 % are always published.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass
class ProgressThrottle:
    interval: float = 1.0
    fraction: float = 0.01
    _last_time: float | None = None
    _last_done: int = 0
    _last_phase: int = -1

    def due(self, now: float, done: int, total: int, phase: int = 0) -> bool:
        """True if an event should be published now; records it as published if so."""
        first = self._last_time is None
        phase_changed = phase != self._last_phase
        finished = total > 0 and done >= total and self._last_done < total
        timed_out = not first and now - (self._last_time or 0.0) >= self.interval
        advanced = total > 0 and done - self._last_done >= self.fraction * total
        if first or phase_changed or finished or timed_out or advanced:
            self._last_time, self._last_done, self._last_phase = now, done, phase
            return True
        return False


@dataclass
class RateWindow:
    """Bytes per second over the last `window` seconds of samples."""

    window: float = 5.0
    _samples: deque[tuple[float, int]] = field(default_factory=deque)

    def add(self, now: float, done: int) -> None:
        self._samples.append((now, done))
        # Keep one sample older than the window so the span covers the whole window.
        while len(self._samples) > 2 and now - self._samples[1][0] >= self.window:
            self._samples.popleft()

    def rate(self) -> float:
        if len(self._samples) < 2:
            return 0.0
        (t0, b0), (t1, b1) = self._samples[0], self._samples[-1]
        if t1 - t0 < 0.2:  # too short a span gives wild numbers
            return 0.0
        return max(0.0, (b1 - b0) / (t1 - t0))


def eta_seconds(done: int, total: int, rate: float) -> float:
    """Seconds to completion at `rate`; -1 when unknown (no rate yet)."""
    if done >= total:
        return 0.0
    if rate <= 0:
        return -1.0
    return (total - done) / rate
