"""Every worker reads every cancel: its own consumer, assigned all partitions, no group membership.

A cancel applies to a request published before it (compared by message timestamp), so a cancel
that arrives while the request still waits in the queue stops it too, and a retry published after
the cancel runs. Cancels older than the lookback are not read at start-up.
"""

from __future__ import annotations

import time

from mtv.bus import broadcast


class CancelWatcher:
    def __init__(self, bootstrap: str, topic: str, lookback_seconds: int) -> None:
        self._topic = topic
        self._lookback = lookback_seconds
        self._consumer = broadcast.reader(bootstrap, "mtv-transfer-cancels")
        self._canceled: dict[str, tuple[int, str]] = {}  # transfer id -> (timestamp ms, reason)

    def start(self, timeout: float = 60.0) -> None:
        broadcast.assign_since(self._consumer, self._topic, int((time.time() - self._lookback) * 1000), timeout)

    def poll(self, max_messages: int = 500) -> int:
        """Take in what has arrived (never blocks); return how many cancels were read."""
        seen = 0
        for msg, cancel in broadcast.drain(self._consumer, "disk_transfer_cancel_requested", max_messages):
            seen += 1
            stamp = msg.timestamp()[1]
            if stamp >= self._canceled.get(cancel.transfer_id, (-1, ""))[0]:
                self._canceled[cancel.transfer_id] = (stamp, cancel.reason or "cancel requested")
        return seen

    def canceled(self, transfer_id: str, requested_at_ms: int) -> str | None:
        """The reason if `transfer_id` was canceled at or after its request was published."""
        stamp, reason = self._canceled.get(transfer_id, (-1, ""))
        return reason if stamp >= requested_at_ms else None

    def close(self) -> None:
        self._consumer.close()
