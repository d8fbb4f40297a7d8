"""Hand-off decisions: which waiting requests may move, to which idle peer, and when a request waits."""

from __future__ import annotations

from mtv.transfer import handoff
from mtv.transfer.handoff import HandedOff, PeerStatus, State, Waiting


def peer(name: str, state: State = State.IDLE, heard_at: float = 100.0, partitions: tuple[int, ...] = (3, 4),
         transfer_id: str = "") -> PeerStatus:
    return PeerStatus(worker=name, state=state, transfer_id=transfer_id, attempt=1, partitions=frozenset(partitions),
                      interval_seconds=2.0, heard_at=heard_at)


def test_only_the_oldest_request_of_a_partition_without_a_running_copy_may_move() -> None:
    waiting = [Waiting(1, 7), Waiting(1, 5), Waiting(2, 9), Waiting(0, 3), Waiting(0, 4)]
    # Partition 0 runs a copy: moving 0@3 would commit past it. Partition 1: only 1@5, never 1@7.
    assert handoff.movable(waiting, running_partition=0) == [Waiting(1, 5), Waiting(2, 9)]
    assert handoff.movable(waiting, running_partition=None) == [Waiting(0, 3), Waiting(1, 5), Waiting(2, 9)]
    assert handoff.movable([], running_partition=1) == []
    # A request handed here by a peer stays, and still holds back the later ones of its partition.
    assert handoff.movable([Waiting(1, 5, moved=True), Waiting(1, 7), Waiting(2, 9)], running_partition=0) == [
        Waiting(2, 9)]


def test_idle_peers_are_fresh_idle_others_with_partitions_and_no_unconfirmed_hand_off() -> None:
    peers = {p.worker: p for p in [
        peer("me"),
        peer("busy", State.BUSY, transfer_id="p/v/1"),
        peer("stopped", State.STOPPED),
        peer("stale", heard_at=100.0 - 7.0),  # silent for 3.5 intervals at now=100.5
        peer("unassigned", partitions=()),
        peer("idle-late", heard_at=100.2),
        peer("idle-early", heard_at=99.0),
    ]}
    now = 100.5
    found = [p.worker for p in handoff.idle_peers(peers, "me", now, handed={})]
    assert found == ["idle-early", "idle-late"]  # longest idle first
    handed = {"idle-early": HandedOff("p/v/2", 100.0)}
    assert [p.worker for p in handoff.idle_peers(peers, "me", now, handed)] == ["idle-late"]


def test_a_hand_off_is_confirmed_when_the_peer_reports_copying_that_disk() -> None:
    handed = {"w2": HandedOff("p/v/2", at=100.0)}
    # Still idle (a periodic status sent before it fetched the disk): unconfirmed, no second disk.
    idle = {"w2": peer("w2", heard_at=100.3)}
    assert handoff.unconfirmed(handed, idle, now=100.5) == handed
    assert handoff.idle_peers(idle, "me", 100.5, handoff.unconfirmed(handed, idle, now=100.5)) == []
    # Busy with another disk: still unconfirmed.
    other = {"w2": peer("w2", State.BUSY, heard_at=100.4, transfer_id="p/v/9")}
    assert handoff.unconfirmed(handed, other, now=100.5) == handed
    # Copying it: confirmed; its next idle status counts again.
    busy = {"w2": peer("w2", State.BUSY, heard_at=100.4, transfer_id="p/v/2")}
    assert handoff.unconfirmed(handed, busy, now=100.5) == {}
    # Never seen busy (answered at once, e.g. a duplicate): forgotten after three intervals.
    assert handoff.unconfirmed(handed, idle, now=106.0) == handed
    assert handoff.unconfirmed(handed, idle, now=106.1) == {}
    assert handoff.unconfirmed(handed, {}, now=106.1) == {}


def test_a_status_goes_stale_after_three_intervals() -> None:
    p = peer("w", heard_at=10.0)
    assert p.fresh(16.0) and not p.fresh(16.01)
    assert not peer("w", State.STOPPED, heard_at=10.0).fresh(10.0)


def test_destination_is_one_of_the_peers_partitions_and_spreads_by_transfer() -> None:
    p = peer("w", partitions=(8, 2, 5))
    chosen = {handoff.destination(p, f"plan/vm/{k}") for k in range(2000, 2012)}
    assert chosen == {2, 5, 8}
    assert handoff.destination(p, "plan/vm/2000") == handoff.destination(p, "plan/vm/2000")


def test_a_request_waits_while_a_fresh_peer_copies_the_same_disk() -> None:
    peers = {"w2": peer("w2", State.BUSY, heard_at=50.0, transfer_id="plan/vm/2000"),
             "me": peer("me", State.BUSY, heard_at=50.0, transfer_id="plan/vm/2001")}
    assert handoff.copying_elsewhere(peers, "me", "plan/vm/2000", now=51.0) == "w2"
    assert handoff.copying_elsewhere(peers, "me", "plan/vm/2001", now=51.0) is None  # that is me
    assert handoff.copying_elsewhere(peers, "me", "plan/vm/2002", now=51.0) is None
    # The peer died (kill -9): its status goes stale and the request stops waiting.
    assert handoff.copying_elsewhere(peers, "me", "plan/vm/2000", now=57.0) is None
