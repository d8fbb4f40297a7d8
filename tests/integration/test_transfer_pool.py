"""The worker pool under change: several workers share disks, each disk is copied once; a worker
killed (-9) or stopped (SIGTERM) mid-disk is resumed by another from its checkpoint; cancels stop
a copy within 2 s; progress arrives at least once per second.

The simulator limits each /folder stream (`slow_vsphere_sim`), so a 40 MiB disk takes ~5 s per worker.
"""

from __future__ import annotations

import filecmp
import re
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from fixtures.transfer import Pool, Worker, datastore_file, file_sha256, sim_disks, wait_balanced
from mtv import events
from mtv.bus.codec import encode
from mtv.bus.publisher import event_headers
from mtv.devstack.vsphere_sim import SimHandle
from mtv.provider_store import ProviderRecord
from mtv.transfer.checkpoint import CheckpointStore
from mtv.transfer.directory import WorkerDirectory
from mtv.v1 import transfer_pb2

pytest_plugins = ["fixtures.transfer_fixtures"]
pytestmark = [pytest.mark.kafka, pytest.mark.vsphere]

# Small chunks and frequent checkpoints so a 40 MiB disk has many resume points.
WORKER_ENV = {"transfer_chunk_bytes": 2 << 20, "transfer_checkpoint_chunks": 2}
COPYING = transfer_pb2.TRANSFER_PHASE_COPYING


def _start(pool: Pool, *names: str) -> list[Worker]:
    workers = [pool.start_worker(name, **WORKER_ENV) for name in names]
    for worker in workers:
        worker.wait_ready()
    wait_balanced(workers)
    return workers


def _copying(pool: Pool, transfer_id: str, at_least: float = 0.0) -> Any:
    """The first COPYING progress of `transfer_id` with bytes_done >= at_least of the disk."""
    def found() -> Any:
        for p in pool.recorder.of("disk_transfer_progress", transfer_id):
            if p.phase == COPYING and p.bytes_done >= at_least * p.bytes_total and p.bytes_done > 0:
                return p
        return None
    return pool.recorder.wait(found, timeout=60, what=f"{transfer_id} copying past {at_least:.0%}")


def _send(pool: Pool, transfer_id: str, disk: dict[str, Any], target: Path, provider: ProviderRecord) -> None:
    pool.send(pool.request(transfer_id, disk, str(target), disk["size"], provider=provider))


def _assert_identical(sim: SimHandle, disk: dict[str, Any], done: Any, target: Path) -> None:
    assert isinstance(done, transfer_pb2.DiskTransferCompleted), done
    assert done.sha256 == disk["sha256"] == file_sha256(target)
    assert filecmp.cmp(target, datastore_file(sim, disk), shallow=False)


def test_three_workers_share_six_disks_and_copy_each_once(pool: Pool, slow_vsphere_sim: SimHandle,
                                                          tmp_path: Path) -> None:
    provider = pool.add_provider(slow_vsphere_sim)
    _start(pool, "w1", "w2", "w3")
    disks = sim_disks(slow_vsphere_sim)
    assert len(disks) == 6
    ids = [f"plan-share/vm{i}/2000" for i in range(6)]
    started = time.monotonic()
    for tid, disk in zip(ids, disks, strict=True):
        _send(pool, tid, disk, tmp_path / f"{tid.replace('/', '_')}.raw", provider)
    for tid, disk in zip(ids, disks, strict=True):
        _assert_identical(slow_vsphere_sim, disk, pool.recorder.result(tid), tmp_path / f"{tid.replace('/', '_')}.raw")
    elapsed = time.monotonic() - started
    time.sleep(1.0)  # a second Completed would arrive now

    for tid in ids:
        assert len(pool.recorder.results(tid)) == 1, f"{tid}: {pool.recorder.results(tid)}"
        progress = pool.recorder.of("disk_transfer_progress", tid)
        assert len({p.worker for p in progress}) == 1, f"{tid} was started by several workers"
        assert sum(p.phase == transfer_pb2.TRANSFER_PHASE_CONNECTING for p in progress) == 1
    by_worker = {pool.recorder.results(tid)[0].worker for tid in ids}
    assert len(by_worker) >= 2, f"the work was not shared: {by_worker}"
    print(f"6 disks on 3 workers in {elapsed:.1f} s, by {sorted(by_worker)}")


def _statuses(pool: Pool, names: set[str], timeout: float = 30.0) -> dict[str, Any]:
    """The workers' statuses as their peers read them from the workers topic."""
    directory = WorkerDirectory(pool.bootstrap, pool.topics.workers, pool.publisher, worker="test-observer",
                                group_id=f"{pool.prefix}workers", requests_topic=pool.topics.requests.name,
                                source="test")
    directory.start()
    try:
        deadline = time.monotonic() + timeout
        while not names <= {w for w, p in directory.peers.items() if p.partitions}:
            assert time.monotonic() < deadline, f"no status from {names - set(directory.peers)}"
            directory.poll()
            time.sleep(0.1)
        return dict(directory.peers)
    finally:
        directory.close()


def test_an_idle_worker_takes_disks_waiting_behind_a_busy_one(pool: Pool, slow_vsphere_sim: SimHandle,
                                                                tmp_path: Path) -> None:
    """4 disks all in w1's partitions: without hand-off w1 copies them one after another while w2
    idles; with it, w1 hands waiting requests to w2 whenever w2 reports idle, so each copies 2."""
    provider = pool.add_provider(slow_vsphere_sim)
    _start(pool, "w1", "w2")
    statuses = _statuses(pool, {"w1", "w2"})
    w1_partitions = sorted(statuses["w1"].partitions)
    assert len(w1_partitions) >= 4 and not statuses["w1"].partitions & statuses["w2"].partitions
    disks = sim_disks(slow_vsphere_sim)[:4]
    ids = [f"plan-handoff/vm{i}/2000" for i in range(4)]
    targets = {tid: tmp_path / f"handoff-{i}.raw" for i, tid in enumerate(ids)}
    for tid, disk, partition in zip(ids, disks, w1_partitions, strict=False):
        event = events.make(pool.request(tid, disk, str(targets[tid]), disk["size"],
                                         provider=provider), source="test", correlation_id="plan-handoff")
        pool.publisher.publish_raw(pool.topics.requests.name, tid.encode(), encode(event), event_headers(event),
                                   partition=partition)
    pool.publisher.flush()

    for tid, disk in zip(ids, disks, strict=True):
        _assert_identical(slow_vsphere_sim, disk, pool.recorder.result(tid), targets[tid])
    time.sleep(1.0)  # a second Completed would arrive now
    by_worker: Counter[str] = Counter()
    for tid in ids:
        results = pool.recorder.results(tid)
        assert len(results) == 1, f"{tid}: {results}"
        progress = pool.recorder.of("disk_transfer_progress", tid)
        assert {p.worker for p in progress} == {results[0].worker}, f"{tid} was started by several workers"
        by_worker[results[0].worker] += 1
    assert by_worker == {"w1": 2, "w2": 2}, by_worker
    handed = [line for line in pool.workers[0].log.read_text().splitlines() if "handed to idle worker w2" in line]
    assert len(handed) == 2, handed
    print(f"w1 owned partitions {w1_partitions}; disks copied {dict(by_worker)}")


def test_killed_worker_is_resumed_by_another_from_its_checkpoint(pool: Pool, slow_vsphere_sim: SimHandle,
                                                                 tmp_path: Path) -> None:
    provider = pool.add_provider(slow_vsphere_sim)
    workers = {w.name: w for w in _start(pool, "w1", "w2")}
    disk, tid, target = sim_disks(slow_vsphere_sim)[0], "plan-kill/vm0/2000", tmp_path / "killed.raw"
    _send(pool, tid, disk, target, provider)
    victim = workers[_copying(pool, tid, at_least=0.4).worker]
    checkpoints = CheckpointStore(pool.bootstrap, pool.topics.checkpoints, pool.publisher, "test")
    before = checkpoints.load(tid)
    victim.kill()
    checkpoints.close()
    assert before is not None and 0 < before.offset < disk["size"] and before.worker == victim.name

    done = pool.recorder.result(tid, timeout=90)
    _assert_identical(slow_vsphere_sim, disk, done, target)
    assert done.worker != victim.name
    assert done.resumed_from >= before.offset
    assert done.bytes_read == disk["size"] - done.resumed_from < disk["size"], "re-read less than from zero"
    assert len(pool.recorder.results(tid)) == 1
    print(f"killed {victim.name} with a checkpoint at {before.offset}; {done.worker} resumed at {done.resumed_from}, "
          f"read {done.bytes_read} of {disk['size']} bytes")


def test_sigterm_checkpoints_at_a_chunk_and_hands_the_disk_over(pool: Pool, slow_vsphere_sim: SimHandle,
                                                                 tmp_path: Path) -> None:
    provider = pool.add_provider(slow_vsphere_sim)
    workers = {w.name: w for w in _start(pool, "w1", "w2")}
    disk, tid, target = sim_disks(slow_vsphere_sim)[1], "plan-term/vm1/2000", tmp_path / "stopped.raw"
    _send(pool, tid, disk, target, provider)
    leaving = workers[_copying(pool, tid, at_least=0.3).worker]
    stopped_at = time.monotonic()
    assert leaving.terminate(timeout=30) == 0
    exited = time.monotonic() - stopped_at
    assert exited < 10, "stop at a chunk boundary, not at the end of the disk"
    stopped = re.search(r"interrupted at byte (\d+); resume point checkpointed", leaving.log.read_text())
    assert stopped and int(stopped[1]) % WORKER_ENV["transfer_chunk_bytes"] == 0, "at a chunk boundary"

    done = pool.recorder.result(tid, timeout=90)
    _assert_identical(slow_vsphere_sim, disk, done, target)
    assert done.worker != leaving.name and done.resumed_from == int(stopped[1]) > 0
    assert done.bytes_read == disk["size"] - done.resumed_from
    # The group hands the partition over at once (no session timeout to wait for).
    taken_over = [s.at for s in pool.recorder.seen if s.field == "disk_transfer_progress"
                  and s.payload.transfer_id == tid and s.payload.worker == done.worker]
    assert taken_over[0] - stopped_at < 15
    print(f"SIGTERM: exited after {exited:.2f} s at byte {stopped[1]}; {done.worker} copying after "
          f"{taken_over[0] - stopped_at:.2f} s")


def test_cancel_stops_a_copy_within_two_seconds(pool: Pool, slow_vsphere_sim: SimHandle, tmp_path: Path) -> None:
    provider = pool.add_provider(slow_vsphere_sim)
    (worker,) = _start(pool, "w1")
    disks = sim_disks(slow_vsphere_sim)
    _send(pool, "plan-cancel/vm2/2000", disks[2], tmp_path / "a.raw", provider)
    _copying(pool, "plan-cancel/vm2/2000")
    # Queued behind the running disk on this single worker: canceled before it starts.
    _send(pool, "plan-cancel/vm3/2000", disks[3], tmp_path / "b.raw", provider)
    pool.cancel("plan-cancel/vm3/2000", reason="user changed the plan")
    time.sleep(0.5)

    asked = time.monotonic()
    pool.cancel("plan-cancel/vm2/2000", reason="user canceled the migration")
    failed = pool.recorder.result("plan-cancel/vm2/2000", timeout=10)
    took = next(s.at for s in pool.recorder.seen if s.payload is failed) - asked
    assert isinstance(failed, transfer_pb2.DiskTransferFailed)
    assert failed.code == "canceled" and "user canceled the migration" in failed.reason and not failed.retryable
    assert took <= 2.0, f"cancel took {took:.2f} s"
    print(f"cancel to DiskTransferFailed: {took:.2f} s")

    queued = pool.recorder.result("plan-cancel/vm3/2000", timeout=30)
    assert isinstance(queued, transfer_pb2.DiskTransferFailed) and queued.code == "canceled"
    assert not pool.recorder.of("disk_transfer_progress", "plan-cancel/vm3/2000"), "it never started"

    # Nothing more is copied for the canceled disk, and the worker serves the next request.
    seen_after = len(pool.recorder.of("disk_transfer_progress", "plan-cancel/vm2/2000"))
    _send(pool, "plan-cancel/vm4/2000", disks[4], tmp_path / "c.raw", provider)
    _assert_identical(slow_vsphere_sim, disks[4], pool.recorder.result("plan-cancel/vm4/2000"), tmp_path / "c.raw")
    assert len(pool.recorder.of("disk_transfer_progress", "plan-cancel/vm2/2000")) == seen_after
    assert worker.proc.poll() is None


def test_progress_arrives_at_least_once_per_second(pool: Pool, slow_vsphere_sim: SimHandle, tmp_path: Path) -> None:
    provider = pool.add_provider(slow_vsphere_sim)
    _start(pool, "w1")
    disk, tid = sim_disks(slow_vsphere_sim)[5], "plan-progress/vm5/2000"
    _send(pool, tid, disk, tmp_path / "p.raw", provider)
    done = pool.recorder.result(tid)
    assert isinstance(done, transfer_pb2.DiskTransferCompleted)
    assert done.duration_seconds > 3, "the copy must last long enough to judge the cadence"

    progress = [s for s in pool.recorder.seen if s.field == "disk_transfer_progress" and s.payload.transfer_id == tid]
    stamps = [s.event.envelope.occurred_at.ToNanoseconds() / 1e9 for s in progress]
    gaps = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
    assert max(gaps) <= 1.3, f"largest gap {max(gaps):.2f} s"  # 1 s cadence + scheduling on a busy machine
    print(f"{len(progress)} progress events in {done.duration_seconds:.1f} s, largest gap {max(gaps):.2f} s")
    assert len(progress) <= done.duration_seconds + 100 + 5, "throttled: once per second or per 1 %"
    done_bytes = [s.payload.bytes_done for s in progress]
    assert done_bytes == sorted(done_bytes) and done_bytes[-1] == disk["size"]
    phases = [s.payload.phase for s in progress]
    assert phases[0] == transfer_pb2.TRANSFER_PHASE_CONNECTING and phases[-1] == transfer_pb2.TRANSFER_PHASE_FINISHING
    copying = [s.payload for s in progress if s.payload.phase == COPYING and s.payload.bytes_done]
    assert all(p.worker == "w1" and p.bytes_total == disk["size"] for p in copying)
    middle = copying[len(copying) // 2]
    assert middle.rate_bytes_per_second > 0 and middle.eta_seconds > 0


def test_scaling_out_during_copies_moves_disks_without_overlap(pool: Pool, slow_vsphere_sim: SimHandle,
                                                               tmp_path: Path) -> None:
    """Workers join while disks are copied: a partition that moves takes its disk along (stopped and
    checkpointed by the old owner in the revoke callback, resumed by the new one), never copied twice."""
    provider = pool.add_provider(slow_vsphere_sim)
    _start(pool, "w1")
    disks = sim_disks(slow_vsphere_sim)[:3]
    ids = [f"plan-scale/vm{i}/2000" for i in range(3)]
    for tid, disk in zip(ids, disks, strict=True):
        _send(pool, tid, disk, tmp_path / f"{tid.split('/')[1]}.raw", provider)
    pool.recorder.wait(  # whichever disk w1 took first
        lambda: any(p.phase == COPYING and p.bytes_done for p in pool.recorder.of("disk_transfer_progress")),
        what="a copy in progress")
    joined = [pool.start_worker(name, **WORKER_ENV) for name in ("w2", "w3")]
    for worker in joined:
        worker.wait_ready()

    for tid, disk in zip(ids, disks, strict=True):
        _assert_identical(slow_vsphere_sim, disk, pool.recorder.result(tid, timeout=120),
                          tmp_path / f"{tid.split('/')[1]}.raw")
    time.sleep(1.0)
    moved = 0
    for tid in ids:
        assert len(pool.recorder.results(tid)) == 1
        spans: dict[str, tuple[int, int]] = {}
        for s in pool.recorder.seen:
            if s.field == "disk_transfer_progress" and s.payload.transfer_id == tid:
                stamp = s.event.envelope.occurred_at.ToNanoseconds()
                low, high = spans.get(s.payload.worker, (stamp, stamp))
                spans[s.payload.worker] = (min(low, stamp), max(high, stamp))
        ordered = sorted(spans.values())
        assert all(a[1] < b[0] for a, b in zip(ordered, ordered[1:], strict=False)), f"{tid} copied twice at once"
        moved += len(spans) - 1
        if len(spans) > 1:
            print(f"{tid}: copied by {sorted(spans)}, resumed at {pool.recorder.results(tid)[0].resumed_from}")
    handed_over = sum(w.log.read_text().count("revoked while copying") for w in pool.workers)
    assert moved == handed_over, (moved, handed_over)
    print(f"{handed_over} disk(s) moved to a joining worker mid-copy")


def test_a_frozen_worker_loses_its_disk_and_does_not_publish_when_it_wakes(
    pool: Pool, slow_vsphere_sim: SimHandle, tmp_path: Path
) -> None:
    """SIGSTOP past the session timeout (6 s): the group gives the partition to another worker, which
    resumes from the last checkpoint; the frozen one, woken, finds its partition lost and stops."""
    provider = pool.add_provider(slow_vsphere_sim)
    workers = {w.name: w for w in _start(pool, "w1", "w2")}
    disk, tid, target = sim_disks(slow_vsphere_sim)[3], "plan-frozen/vm3/2000", tmp_path / "frozen.raw"
    _send(pool, tid, disk, target, provider)
    frozen = workers[_copying(pool, tid, at_least=0.25).worker]
    frozen.proc.send_signal(signal.SIGSTOP)
    try:
        other = pool.recorder.wait(lambda: next((p for p in pool.recorder.of("disk_transfer_progress", tid)
                                                 if p.worker != frozen.name), None), timeout=60,
                                   what="another worker taking the disk")
        assert other.phase in (transfer_pb2.TRANSFER_PHASE_CONNECTING, COPYING)
    finally:
        frozen.proc.send_signal(signal.SIGCONT)
    done = pool.recorder.result(tid, timeout=90)
    _assert_identical(slow_vsphere_sim, disk, done, target)
    assert done.worker != frozen.name and done.resumed_from > 0
    deadline = time.monotonic() + 30
    while "lost while copying" not in frozen.log.read_text():
        assert time.monotonic() < deadline, "the woken worker never noticed it lost the partition"
        time.sleep(0.2)
    time.sleep(2.0)
    assert [r.worker for r in pool.recorder.results(tid)] == [done.worker], "the woken worker published too"
    assert frozen.proc.poll() is None, "it keeps serving"
