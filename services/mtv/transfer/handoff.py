"""Handing a waiting disk to an idle peer (pure: statuses in, decisions out, no I/O).

A disk belongs to the worker owning its request's partition. A busy worker copies one disk and
leaves the others of its partitions waiting, even when another worker sits idle: with 4 disks and
2 workers, the split is 2/2, 3/1 or 4/0 by key hash. So a busy worker re-publishes a waiting
request into a partition owned by an idle peer, then commits past it in its own partition.

Only the oldest waiting request of a partition that has no copy running may move: offsets are
committed in order, so moving a request behind a running copy would commit past that copy. A
request moves at most once: two workers that turn busy at the same moment each see the other
idle for a moment (statuses travel through Kafka), and would otherwise hand the same disk back
and forth.

Peers are known from the `TransferWorkerStatus` each worker publishes on every change and every
`interval_seconds`. A peer is idle when its last status says so and is fresh (heard within
`STALE_INTERVALS` intervals). After a hand-off, the peer gets nothing more from this worker until
it reports copying that disk (or the hand-off is `STALE_INTERVALS` old): its periodic "idle"
status may be published before it fetched the disk, and must not draw a second one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum

STALE_INTERVALS = 3.0


class State(Enum):
    IDLE = "idle"
    BUSY = "busy"
    STOPPED = "stopped"


@dataclass(frozen=True)
class PeerStatus:
    worker: str
    state: State
    transfer_id: str
    attempt: int
    partitions: frozenset[int]
    interval_seconds: float
    heard_at: float  # this process's monotonic clock when the status arrived

    def fresh(self, now: float) -> bool:
        return self.state is not State.STOPPED and now - self.heard_at <= STALE_INTERVALS * self.interval_seconds


@dataclass(frozen=True)
class HandedOff:
    """A disk given to a peer that has not yet reported copying it."""

    transfer_id: str
    at: float  # this process's monotonic clock


@dataclass(frozen=True)
class Waiting:
    """A request this worker holds but has not started: its partition and offset there."""

    partition: int
    offset: int
    moved: bool = False  # handed here by a peer already


def movable(waiting: Iterable[Waiting], running_partition: int | None) -> list[Waiting]:
    """The requests that may move: the oldest per partition, not behind the running copy, not moved before."""
    oldest: dict[int, Waiting] = {}
    for w in waiting:
        if w.partition != running_partition and (w.partition not in oldest or w.offset < oldest[w.partition].offset):
            oldest[w.partition] = w
    return sorted((w for w in oldest.values() if not w.moved), key=lambda w: (w.offset, w.partition))


def unconfirmed(handed: Mapping[str, HandedOff], peers: Mapping[str, PeerStatus], now: float
                ) -> dict[str, HandedOff]:
    """The hand-offs still unconfirmed: the peer has not reported copying the disk, and it is not too old
    (a disk answered at once, e.g. a duplicate, never shows as busy)."""
    kept = {}
    for worker, h in handed.items():
        peer = peers.get(worker)
        if peer is not None and peer.state is State.BUSY and peer.transfer_id == h.transfer_id:
            continue
        interval = peer.interval_seconds if peer is not None else 2.0
        if now - h.at <= STALE_INTERVALS * interval:
            kept[worker] = h
    return kept


def idle_peers(peers: Mapping[str, PeerStatus], me: str, now: float,
               handed: Mapping[str, HandedOff]) -> list[PeerStatus]:
    """Fresh idle peers owning partitions, with no unconfirmed hand-off; longest idle first."""
    found = [p for p in peers.values()
             if p.worker != me and p.state is State.IDLE and p.partitions and p.fresh(now) and p.worker not in handed]
    return sorted(found, key=lambda p: (p.heard_at, p.worker))


def destination(peer: PeerStatus, transfer_id: str) -> int:
    """One of the peer's partitions, spread by transfer id so repeated hand-offs do not pile on one."""
    ordered = sorted(peer.partitions)
    return ordered[sum(transfer_id.encode()) % len(ordered)]


def copying_elsewhere(peers: Mapping[str, PeerStatus], me: str, transfer_id: str, now: float) -> str | None:
    """The fresh peer copying `transfer_id` right now, if any. A request for that disk here (a
    planner's re-send after a restart, a hand-off whose commit was lost) must wait rather than copy
    the disk a second time at once: when the peer finishes, the request finds the `done`
    checkpoint; when the peer stops or dies, its status changes or goes stale and the copy resumes."""
    for p in peers.values():
        if p.worker != me and p.state is State.BUSY and p.transfer_id == transfer_id and p.fresh(now):
            return p.worker
    return None
