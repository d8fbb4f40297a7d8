"""A token bucket limiting a worker's source bandwidth, shared by its reader threads.

Pure apart from the lock: time comes from an injected clock, and `reserve` returns how long the
caller must wait instead of sleeping, so tests drive it with a fake clock and the reader decides
how to wait (interruptibly, on its stop event).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class TokenBucket:
    """`rate` bytes per second on average, bursts up to `burst` bytes.

    A reservation larger than the bucket is allowed (the debt is paid by waiting), so a reader
    never needs to split its reads to fit the burst.
    """

    def __init__(self, rate: float, burst: float | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive; use no bucket for unlimited bandwidth")
        self.rate = float(rate)
        # A quarter second of traffic by default: smooth enough, and small next to a chunk.
        self.burst = float(burst if burst is not None else rate / 4)
        self._clock = clock
        self._tokens = self.burst
        self._last = clock()
        self._lock = threading.Lock()

    def reserve(self, amount: int) -> float:
        """Take `amount` tokens now; return the seconds to wait before using them (0 if none)."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now
            self._tokens -= amount
            if self._tokens >= 0:
                return 0.0
            return -self._tokens / self.rate
