"""A real single-node Apache Kafka broker (KRaft) run from Maven Central jars, for the local stack and tests.

There is no Docker engine and Debian ships no broker, so the jars listed in deploy/local/kafka/pom.xml are
resolved once into the cache and run with `java -cp`. See /work/shared/notes/kafka-local.md for the facts
behind the settings below.
"""

from __future__ import annotations

import base64
import errno
import fcntl
import hashlib
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from mtv.devstack.paths import cache_dir, repo_root
from mtv.devstack.process import StackError, alive, log_tail, spawn, stop, stop_named

KAFKA_DIR = repo_root() / "deploy" / "local" / "kafka"
POM = KAFKA_DIR / "pom.xml"
LOG4J_CONFIG = KAFKA_DIR / "log4j2.properties"

PORT_ENV = "MTV_KAFKA_PORT"
CONTROLLER_PORT_ENV = "MTV_KAFKA_CONTROLLER_PORT"

READY_TIMEOUT = 60.0
MVN_TIMEOUT = 900.0
_ANSI = re.compile(r"\x1b\[[0-9;]*m")

# Heap is always set: without it the JVM takes a quarter of RAM. G1 with short pauses as in
# kafka-run-class.sh. C1 only (TieredStopAtLevel=1): a test broker lives for minutes, so warm-up
# matters more than peak speed on 2 cores.
JVM_OPTS = (
    "-Xms512m",
    "-Xmx512m",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-XX:TieredStopAtLevel=1",
    "-Djava.awt.headless=true",
)


def _pom_kafka_version(pom: Path) -> str:
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    node = ET.parse(pom).getroot().find("m:properties/m:kafka.version", ns)
    if node is None or not (node.text or "").strip():
        raise StackError(f"{pom} has no <kafka.version> property")
    return (node.text or "").strip()


# The pom is the one place the version lives; Python reads it so the two cannot drift.
KAFKA_VERSION = _pom_kafka_version(POM)


@dataclass(frozen=True)
class BrokerHandle:
    bootstrap: str
    pid: int
    log: Path


# --- jars -------------------------------------------------------------------------------------------------


def _pom_digest() -> str:
    return hashlib.sha256(POM.read_bytes()).hexdigest()


def _require_tool(tool: str, hint: str) -> str:
    found = shutil.which(tool)
    if not found:
        raise StackError(f"`{tool}` not found on PATH: {hint}")
    return found


def java_bin() -> str:
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").is_file():
        return str(Path(home) / "bin" / "java")
    return _require_tool("java", "install a JDK 17+ (Debian: apt-get install openjdk-17-jre-headless)")


def ensure_jars() -> Path:
    """The directory of broker jars for KAFKA_VERSION, resolved with Maven on first use and cached after."""
    home = cache_dir() / f"kafka-{KAFKA_VERSION}"
    libs = home / "libs"
    marker = home / ".resolved"
    digest = _pom_digest()
    if libs.is_dir() and marker.is_file() and marker.read_text().strip() == digest:
        return libs

    home.mkdir(parents=True, exist_ok=True)
    # Two test sessions may start at once; the second waits and then finds the marker.
    with open(home / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if libs.is_dir() and marker.is_file() and marker.read_text().strip() == digest:
            return libs
        _resolve_into(home, libs, marker, digest)
    return libs


def _resolve_into(home: Path, libs: Path, marker: Path, digest: str) -> None:
    mvn = _require_tool("mvn", "install Maven 3.8+ (Debian: apt-get install maven)")
    java_bin()
    print(f"resolving Kafka {KAFKA_VERSION} jars from Maven Central (first run: ~1-2 min)…", file=sys.stderr)
    started = time.monotonic()
    for stale in home.glob("libs.*"):  # left by an interrupted run; we hold the lock, so nobody uses it
        shutil.rmtree(stale, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix="libs.", dir=home))
    argv = [
        mvn, "-B", "-q", "-Dstyle.color=never", "-f", str(POM),
        f"-Dmaven.repo.local={cache_dir() / 'm2'}",
        f"-Dkafka.version={KAFKA_VERSION}",
        "dependency:copy-dependencies",
        "-DincludeScope=runtime",
        f"-DoutputDirectory={staging}",
    ]  # fmt: skip
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=MVN_TIMEOUT, check=False)
    except subprocess.TimeoutExpired as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise StackError(
            f"mvn did not finish in {MVN_TIMEOUT:.0f}s resolving Kafka jars; is Maven Central reachable?"
        ) from exc
    if proc.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        # Maven's jansi still emits colour resets in batch mode; they only clutter the message.
        tail = "\n".join(_ANSI.sub("", proc.stdout + proc.stderr).splitlines()[-30:])
        raise StackError(
            f"mvn failed ({proc.returncode}) resolving Kafka {KAFKA_VERSION} jars from {POM}.\n"
            f"See the error below (Maven Central unreachable? unknown version?); to retry by hand:\n"
            f"  {' '.join(argv)}\n{tail}"
        )
    _check_jars(staging)
    staging.chmod(0o755)  # mkdtemp makes it 0700; the cache may be shared with other users' tools

    # Swap in whole: an interrupted run leaves only a libs.* staging dir, never a half-filled libs/.
    if libs.exists():
        old = Path(tempfile.mkdtemp(prefix="old.", dir=home))
        libs.rename(old / "libs")
        shutil.rmtree(old, ignore_errors=True)
    staging.rename(libs)
    marker.write_text(digest + "\n")
    count = len(list(libs.glob("*.jar")))
    print(f"resolved {count} jars into {libs} in {time.monotonic() - started:.0f}s", file=sys.stderr)


def _check_jars(libs: Path) -> None:
    names = {jar.name for jar in libs.glob("*.jar")}
    if f"kafka_2.13-{KAFKA_VERSION}.jar" not in names:
        raise StackError(f"mvn succeeded but kafka_2.13-{KAFKA_VERSION}.jar is missing from {libs}")
    slf4j = sorted(n for n in names if n.startswith("slf4j-api-"))
    # A 2.x api ignores the 1.x log4j binding and the broker then runs with no log at all.
    if not slf4j or any(not n.startswith("slf4j-api-1.7.") for n in slf4j):
        raise StackError(f"expected slf4j-api 1.7.x among the Kafka jars, got {slf4j or 'none'}; fix {POM}")


# --- ports ------------------------------------------------------------------------------------------------


def ports_from_env(defaults: tuple[int, int] = (0, 0)) -> tuple[int, int]:
    """(broker, controller) ports from MTV_KAFKA_PORT / MTV_KAFKA_CONTROLLER_PORT, else `defaults`; 0 = pick."""
    ports = []
    for var, default in zip((PORT_ENV, CONTROLLER_PORT_ENV), defaults, strict=True):
        raw = os.environ.get(var, str(default)).strip() or "0"
        if not raw.isdigit() or int(raw) > 65535:
            raise StackError(f"{var}={raw!r} is not a TCP port; use 1-65535, or 0 to pick a free one")
        ports.append(int(raw))
    return ports[0], ports[1]


def _bindable(port: int) -> bool:
    # Bind rather than connect: a socket bound but not yet listening also blocks the broker.
    # SO_REUSEADDR as the JVM sets it, so TIME_WAIT leftovers of a previous broker do not count as taken.
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
            raise
    return True


def _free_port(exclude: int) -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    return port if port != exclude else _free_port(exclude)


def _claim(port: int, role: str, var: str, other: int) -> int:
    if port == 0:
        return _free_port(other)
    if port == other or not _bindable(port):
        raise StackError(
            f"port {port} for the Kafka {role} is already in use on 127.0.0.1 "
            f"(see `ss -ltnp 'sport = :{port}'`); set {var} to another port, or to 0 to pick a free one"
        )
    return port


# --- broker -----------------------------------------------------------------------------------------------


def _cluster_id(data_dir: Path) -> str:
    """Kept in data_dir so a reused data dir is formatted with the id its meta.properties already has."""
    path = data_dir / "cluster.id"
    if path.is_file():
        return path.read_text().strip()
    cid = new_cluster_id()
    path.write_text(cid + "\n")
    return cid


def new_cluster_id() -> str:
    """A KRaft cluster id: URL-safe base64 of a random UUID, never starting with "-" (the storage
    tool would read `-t -abc…` as a missing value; Kafka's own Uuid.randomUuid skips those too)."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


def _server_properties(data_dir: Path, port: int, controller_port: int) -> dict[str, str]:
    return {
        # Static quorum: format without --standalone (an error with voters set since 4.1.1).
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@127.0.0.1:{controller_port}",
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(data_dir / "kraft"),
        "num.partitions": "3",
        "default.replication.factor": "1",
        "min.insync.replicas": "1",
        # The default 50 offsets partitions make the first group join slow.
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "3",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "3",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        # Default 3 s delay on every first rebalance; tests create many groups.
        "group.initial.rebalance.delay.ms": "0",
        "auto.create.topics.enable": "true",
        "num.network.threads": "2",
        "num.io.threads": "2",
        "num.recovery.threads.per.data.dir": "1",
        # Default 128 MiB cleaner buffer can OOM a 512 MiB heap.
        "log.cleaner.dedupe.buffer.size": str(32 * 1024 * 1024),
    }


def _write_properties(path: Path, props: dict[str, str]) -> None:
    lines = ["# Written by mtv.devstack.kafka_broker; rewritten at every start."]
    lines += [f"{key}={value.replace(chr(92), chr(92) * 2)}" for key, value in props.items()]
    path.write_text("\n".join(lines) + "\n")


def _classpath(libs: Path) -> str:
    return f"{libs}/*"


def _format_storage(libs: Path, props: Path, cluster_id: str) -> None:
    argv = [
        java_bin(), "-Xmx256m", f"-Dlog4j2.configurationFile={LOG4J_CONFIG}", "-cp", _classpath(libs),
        "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(props), "--ignore-formatted",
    ]  # fmt: skip
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    if proc.returncode != 0:
        out = proc.stdout + proc.stderr
        hint = " Kafka 4 needs Java 17+." if "UnsupportedClassVersionError" in out else ""
        tail = "\n".join(out.splitlines()[-20:])
        raise StackError(f"formatting Kafka storage with {props} failed ({proc.returncode}).{hint}\n{tail}")


def _wait_ready(bootstrap: str, pid: int, log: Path, timeout: float) -> None:
    from confluent_kafka.admin import AdminClient  # imported late: only callers that start a broker need it

    # log_level 0: librdkafka would print a "connection refused" line on every poll until the broker listens.
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0, "socket.timeout.ms": 1000})
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if not alive(pid):
            raise StackError(f"Kafka broker exited during start-up; log {log}:\n{log_tail(log)}")
        try:
            metadata = admin.list_topics(timeout=1)
            if metadata.brokers:
                return
        except Exception as exc:  # KafkaException until the listener answers
            last = exc
        time.sleep(0.2)
    raise StackError(
        f"Kafka broker on {bootstrap} not ready after {timeout:.0f}s (last error: {last}); log {log}:\n"
        f"{log_tail(log)}"
    )


def start_broker(
    data_dir: Path,
    log: Path,
    pid_dir: Path,
    port: int = 0,
    controller_port: int = 0,
    name: str = "kafka",
) -> BrokerHandle:
    """Start a KRaft broker+controller on loopback and return once clients can fetch metadata.

    Port 0 picks a free port; callers that honour MTV_KAFKA_PORT pass `*ports_from_env()`.
    """
    pid_file = pid_dir / f"{name}.pid"
    if pid_file.is_file() and pid_file.read_text().strip().isdigit() and alive(int(pid_file.read_text())):
        raise StackError(f"{name} already runs (pid file {pid_file}); stop it first (stop_broker)")
    # Ports before jars: a clash is reported at once, not after a 2-minute download.
    port = _claim(port, "broker", PORT_ENV, controller_port)
    controller_port = _claim(controller_port, "controller", CONTROLLER_PORT_ENV, port)
    libs = ensure_jars()

    data_dir.mkdir(parents=True, exist_ok=True)
    props = data_dir / "server.properties"
    _write_properties(props, _server_properties(data_dir, port, controller_port))
    _format_storage(libs, props, _cluster_id(data_dir))

    argv = [
        java_bin(), *JVM_OPTS, f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
        "-cp", _classpath(libs), "kafka.Kafka", str(props),
    ]  # fmt: skip
    daemon = spawn(name, argv, log, pid_dir, cwd=data_dir)
    bootstrap = f"127.0.0.1:{port}"
    try:
        _wait_ready(bootstrap, daemon.pid, log, READY_TIMEOUT)
    except BaseException:
        # Never leave a half-started broker holding the ports.
        stop(daemon.pid)
        pid_file.unlink(missing_ok=True)
        raise
    return BrokerHandle(bootstrap=bootstrap, pid=daemon.pid, log=log)


def stop_broker(pid_dir: Path, name: str = "kafka") -> bool:
    """SIGTERM (controlled shutdown), SIGKILL after 30 s; True if a broker was running."""
    return stop_named(name, pid_dir, timeout=30.0)
