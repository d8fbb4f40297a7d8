"""Transfer workers against curl and against themselves, every ratio measured in the same run.

Each copy goes through a real `mtv-transfer` process: a request published on Kafka, timed until its
DiskTransferCompleted is read back (so Kafka, login, checkpoints and fsync are included).

Prints:
  transfer_seconds= / curl_seconds=         one simulator disk (MTV_BENCH_DISK, 10 % data) by the
  transfer_vs_curl=                         worker vs `curl -o file` with the same session cookie
                                            (curl_seconds / transfer_seconds, median of MTV_BENCH_RUNS)
  curl_sha256_seconds= / transfer_vs_curl_sha256=   the same against curl followed by sha256sum (what
                                            it takes to get the integrity the worker reports)
  transfer_cpu_seconds= / curl_cpu_seconds=  CPU (user+sys) of the worker process / of curl per copy:
                                            unlike wall time, barely moved by other load on the machine
  sparse_seconds= / dense_seconds= / sparse_speedup=   local-file sources of the same size, 10 % vs
                                            100 % allocated (the simulator's fill stops at 0.8)
  sha256_seconds= / sparse_speedup_ceiling=  SHA-256 of DISK zero bytes in this process, and
                                            dense_seconds / sha256_seconds: the completion event's
                                            checksum covers the logical disk, holes included, so no
                                            sparse copy can beat hashing it
  sparse_speedup_vsphere=                   the same through the simulator, fill 0.1 vs 0.8: /folder has
                                            no allocation map, so holes still cross the network
  one_worker_seconds= / two_workers_seconds= / two_workers_vs_one=   4 disks from a simulator limiting
                                            each /folder stream (MTV_BENCH_STREAM_RATE), 1 vs 2 workers
                                            (medians of 2 and MTV_BENCH_SCALE_RUNS runs, fresh groups)
  two_workers_runs=                         each 2-worker run's ratio and disks per worker: a disk's
                                            partition is chance (key hash + assignor); busy workers hand
                                            waiting disks to idle ones
"""

from __future__ import annotations

import hashlib
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from pyVim.connect import Disconnect, SmartConnect

from mtv.devstack.vsphere_sim import SimHandle, start_sim, stop_sim
from mtv.v1 import transfer_pb2

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))  # the same pool helpers the integration tests use
from fixtures.transfer import Pool, sim_disks, wait_balanced  # noqa: E402

MiB = 1 << 20
DISK = int(os.environ.get("MTV_BENCH_DISK", str(1024 * MiB)))
RUNS = int(os.environ.get("MTV_BENCH_RUNS", "5"))
SCALE_RUNS = int(os.environ.get("MTV_BENCH_SCALE_RUNS", "3"))
STREAM_RATE = int(os.environ.get("MTV_BENCH_STREAM_RATE", str(8 * MiB)))
SCALE_DISK = 128 * MiB
PARTS = os.environ.get("MTV_BENCH_PARTS", "curl,sparse,scale").split(",")


def _sim(root: Path, name: str, **kw: Any) -> SimHandle:
    base: dict[str, Any] = dict(cluster=1, host=1, standalone_host=0, vm=1, ds=1, disks=1)
    return start_sim(root / name, root / name / "pids", name=name, **(base | kw))


CPU: dict[str, list[float]] = {}  # CPU seconds per copy, by what was copied: less sensitive to a busy machine


def _cpu_of(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime, all threads


def _copy(pool: Pool, source: dict[str, Any] | str, size: int, target: Path, provider: Any = None) -> float:
    """Seconds from publishing a request to reading its DiskTransferCompleted."""
    tid = f"bench/{target.stem}-{time.monotonic_ns()}/1"
    pid = pool.workers[0].proc.pid
    cpu = _cpu_of(pid)
    started = time.monotonic()
    pool.send(pool.request(tid, source, str(target), size, provider=provider))
    done = pool.recorder.result(tid, timeout=600)
    elapsed = time.monotonic() - started
    CPU.setdefault(target.stem, []).append(_cpu_of(pid) - cpu)
    assert isinstance(done, transfer_pb2.DiskTransferCompleted), done
    target.unlink()
    return elapsed


def _curl(sim: SimHandle, disk: dict[str, Any], target: Path, then_hash: bool) -> float:
    url = urlparse(sim.url)
    si = SmartConnect(host=url.hostname, port=url.port, user=sim.username, pwd=sim.password,
                      disableSslCertValidation=True)
    cookie = si._stub.cookie.split(";")[0]  # noqa: SLF001
    cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    subprocess.run(["curl", "-sSfk", "-H", f"Cookie: {cookie}", "-o", str(target),
                    f"https://{url.netloc}{disk['download']}"], check=True)
    if then_hash:
        subprocess.run(["sha256sum", str(target)], check=True, capture_output=True)
    elapsed = time.monotonic() - started
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    CPU.setdefault("curl_sha256" if then_hash else "curl", []).append(
        used.ru_utime + used.ru_stime - cpu.ru_utime - cpu.ru_stime)
    Disconnect(si)
    target.unlink()
    return elapsed


def _interleaved(**fns: Callable[[], float]) -> list[float]:
    """Medians of each, runs interleaved so that machine noise hits all alike; every run to stderr."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    order, rng = list(fns), random.Random(7)
    for _ in range(RUNS):
        rng.shuffle(order)  # no copy always follows the same one (write-back, page cache)
        for name in order:
            times[name].append(fns[name]())
    for name, values in times.items():
        print(f"# {name} runs: " + " ".join(f"{v:.2f}" for v in values), file=sys.stderr)
    return [statistics.median(values) for values in times.values()]


def _local_sources(root: Path) -> tuple[Path, Path]:
    rng = random.Random(4)
    sparse, dense = root / "sparse.img", root / "dense.img"
    with open(sparse, "wb") as f:
        f.truncate(DISK)
        for offset in range(0, DISK, 10 * MiB):  # 1 MiB of data in every 10 MiB: 10 % allocated
            f.seek(offset)
            f.write(rng.randbytes(MiB))
    with open(dense, "wb") as f:
        for _ in range(DISK // (64 * MiB)):
            f.write(rng.randbytes(64 * MiB))
    os.sync()  # no write-back of the sources during the timed copies
    return sparse, dense


def bench_vs_curl(pool: Pool, root: Path, out: Path) -> None:
    sim = _sim(root, "bench-thin", disk_size=DISK, fill=0.1)
    dense_sim = _sim(root, "bench-dense", disk_size=DISK, fill=0.8)
    try:
        provider = pool.add_provider(sim, name="thin")
        dense_provider = pool.add_provider(dense_sim, name="dense")
        disk, dense_disk = sim_disks(sim)[0], sim_disks(dense_sim)[0]
        ours, curl, curl_hash, dense = _interleaved(
            transfer=lambda: _copy(pool, disk, disk["size"], out / "thin.raw", provider),
            curl=lambda: _curl(sim, disk, out / "curl.raw", then_hash=False),
            curl_sha256=lambda: _curl(sim, disk, out / "curl.raw", then_hash=True),
            transfer_dense=lambda: _copy(pool, dense_disk, dense_disk["size"], out / "vdense.raw", dense_provider),
        )
    finally:
        stop_sim(root / "bench-thin" / "pids", name="bench-thin")
        stop_sim(root / "bench-dense" / "pids", name="bench-dense")
    print(f"transfer_seconds={ours:.2f}")
    print(f"transfer_mib_per_second={DISK / MiB / ours:.0f}")
    print(f"curl_seconds={curl:.2f}")
    print(f"transfer_cpu_seconds={statistics.median(CPU['thin']):.2f}")
    print(f"curl_cpu_seconds={statistics.median(CPU['curl']):.2f}")
    print(f"transfer_vs_curl={curl / ours:.2f}")
    print(f"curl_sha256_seconds={curl_hash:.2f}")
    print(f"transfer_vs_curl_sha256={curl_hash / ours:.2f}")
    print(f"sparse_speedup_vsphere={dense / ours:.2f}", flush=True)


def bench_sparse(pool: Pool, root: Path, out: Path) -> None:
    sparse, dense = _local_sources(root)
    try:
        thin, full = _interleaved(sparse=lambda: _copy(pool, str(sparse), DISK, out / "sparse.raw"),
                                  dense=lambda: _copy(pool, str(dense), DISK, out / "dense.raw"))
    finally:
        sparse.unlink()
        dense.unlink()
    print(f"sparse_seconds={thin:.2f}")
    print(f"dense_seconds={full:.2f}")
    print(f"sparse_speedup={full / thin:.2f}", flush=True)
    zeros, digest = bytes(8 * MiB), hashlib.sha256()
    began = time.perf_counter()
    for _ in range(DISK // len(zeros)):
        digest.update(zeros)
    hashing = time.perf_counter() - began
    print(f"sha256_seconds={hashing:.2f}")
    print(f"sparse_speedup_ceiling={full / hashing:.2f}", flush=True)


def _pool_run(bootstrap: str, root: Path, out: Path, sim: SimHandle, workers: int, run: int) -> tuple[float, str]:
    """Seconds for the 4 disks on a fresh pool of `workers`, and how many disks each worker copied."""
    pool = Pool(bootstrap, root / f"scale-{workers}-{run}")
    try:
        provider = pool.add_provider(sim)
        started = [pool.start_worker(f"w{i}") for i in range(workers)]
        for worker in started:
            worker.wait_ready()
        wait_balanced(started)
        ids = [f"bench-plan-{run}/vm-{i}/2000" for i in range(4)]  # where a planner's ids land: chance
        began = time.monotonic()
        for tid, disk in zip(ids, sim_disks(sim), strict=True):
            pool.send(pool.request(tid, disk, str(out / f"scale-{workers}-{tid.split('/')[1]}.raw"), disk["size"],
                                   provider=provider))
        results = [pool.recorder.result(tid, timeout=600) for tid in ids]
        elapsed = time.monotonic() - began
        spread = sorted((sum(r.worker == w.name for r in results) for w in started), reverse=True)
        return elapsed, "/".join(map(str, spread))
    finally:
        pool.close()


def bench_scale(bootstrap: str, root: Path, out: Path) -> None:
    """1 worker once (it copies the 4 disks one after the other), then 2 workers on fresh groups:
    which worker owns which disk's partition is chance, so the 2-worker runs are repeated."""
    sim = _sim(root, "bench-slow", vm=2, standalone_host=1, disk_size=SCALE_DISK, folder_rate_limit=STREAM_RATE)
    try:
        assert len(sim_disks(sim)) == 4
        one = statistics.median(_pool_run(bootstrap, root, out, sim, 1, -run)[0] for run in range(1, 3))
        runs = [_pool_run(bootstrap, root, out, sim, 2, run) for run in range(1, SCALE_RUNS + 1)]
    finally:
        stop_sim(root / "bench-slow" / "pids", name="bench-slow")
    two = statistics.median(seconds for seconds, _ in runs)
    print(f"one_worker_seconds={one:.2f}")
    print(f"two_workers_seconds={two:.2f}")
    print("two_workers_runs=" + ",".join(f"{one / seconds:.2f}({spread})" for seconds, spread in runs))
    print(f"two_workers_vs_one={one / two:.2f}", flush=True)


def main() -> int:
    bootstrap = os.environ["MTV_KAFKA_BOOTSTRAP"]
    with tempfile.TemporaryDirectory(prefix="mtv-bench-transfer-") as tmp:
        root = Path(tmp)
        out = root / "out"
        out.mkdir()
        pool = Pool(bootstrap, root / "pool")
        try:
            pool.start_worker("bench").wait_ready()
            if "curl" in PARTS:
                bench_vs_curl(pool, root, out)
            if "sparse" in PARTS:
                bench_sparse(pool, root, out)
        except BaseException:
            for worker in pool.workers:  # the temporary directory goes away: show why first
                print(f"# {worker.name} exit={worker.proc.poll()} log tail:\n{worker.log.read_text()[-4000:]}",
                      file=sys.stderr)
            raise
        finally:
            pool.close()
        if "scale" in PARTS:
            bench_scale(bootstrap, root, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
