"""One disk transfer from request to result: resume decision, source and sink, copy, events.

Runs in the worker's job thread. Publishes progress while copying and exactly one of
DiskTransferCompleted / DiskTransferFailed — or nothing when interrupted (the worker stops or
loses the partition), in which case the next owner of the request resumes from the checkpoint.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException
from google.protobuf.message import Message
from prometheus_client import Counter

from mtv import events
from mtv.bus import DeliveryError, Publisher
from mtv.provider_store import ProviderNotFound, ProviderStore
from mtv.runtime import metrics
from mtv.transfer.checkpoint import Checkpoint, CheckpointStore, Start, decide
from mtv.transfer.copier import Copier, CopyOptions, CopyResult, CopyState, StopSignal
from mtv.transfer.errors import (
    Canceled,
    Interrupted,
    InvalidRequest,
    SinkRejected,
    SourceAuthFailed,
    SourceError,
    TransferError,
)
from mtv.transfer.progress import ProgressThrottle, RateWindow, eta_seconds
from mtv.transfer.settings import TransferSettings, TransferTopics
from mtv.transfer.sinks import CdiUploadSink, LocalFileSink, Sink
from mtv.transfer.sources import LocalFileSource, Source, check_size
from mtv.transfer.spec import CdiUploadSpec, LocalFile, TransferSpec
from mtv.transfer.throttle import TokenBucket
from mtv.transfer.vsphere import VsphereSource
from mtv.v1 import event_pb2, transfer_pb2

log = logging.getLogger(__name__)
SERVICE = "transfer"
Phase = transfer_pb2.TransferPhase

DISKS = Counter("mtv_transfer_disks_total", "Disk transfers finished, by outcome", ["outcome"])
BYTES_READ = Counter("mtv_transfer_bytes_read_total", "Bytes read from disk sources")
BYTES_WRITTEN = Counter("mtv_transfer_bytes_written_total", "Data bytes written to sinks (holes excluded)")
SECRET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$")


class Outcome(Enum):
    COMPLETED = "completed"  # commit the request
    FAILED = "failed"  # DiskTransferFailed published: commit
    DUPLICATE = "duplicate"  # already completed by an earlier delivery: commit
    INTERRUPTED = "interrupted"  # stop or partition lost: do not commit, the next owner resumes
    RETRY = "retry"  # the result could not be published: redeliver the request


@dataclass(frozen=True)
class JobContext:
    settings: TransferSettings
    topics: TransferTopics
    publisher: Publisher
    checkpoints: CheckpointStore
    provider_dir: Path
    worker: str
    bucket: TokenBucket | None = None

    def copy_options(self) -> CopyOptions:
        s = self.settings
        return CopyOptions(chunk_bytes=s.transfer_chunk_bytes, concurrency=s.transfer_concurrency,
                           hole_block=s.transfer_hole_block, checkpoint_chunks=s.transfer_checkpoint_chunks,
                           checkpoint_seconds=s.transfer_checkpoint_seconds)


class Reporter:
    """Publishes DiskTransferProgress through the throttle (at most once per second or per 1 %)."""

    def __init__(self, job: TransferJob) -> None:
        self._job = job
        self._throttle = ProgressThrottle()
        self._rate = RateWindow()
        self.phase = Phase.TRANSFER_PHASE_CONNECTING

    def update(self, done: int, phase: int | None = None) -> None:
        spec, now = self._job.spec, time.monotonic()
        self.phase = phase if phase is not None else self.phase
        done = min(done, spec.size)
        self._rate.add(now, done)
        if not self._throttle.due(now, done, spec.size, self.phase):
            return
        rate = self._rate.rate()
        metrics.DISK_TRANSFER_THROUGHPUT.set(rate)
        self._job.publish(transfer_pb2.DiskTransferProgress(
            transfer_id=spec.transfer_id, plan_id=spec.plan_id, vm_id=spec.vm_id, bytes_done=done,
            bytes_total=spec.size, rate_bytes_per_second=rate, eta_seconds=eta_seconds(done, spec.size, rate),
            phase=self.phase, worker=self._job.ctx.worker))


class TransferJob:
    def __init__(self, spec: TransferSpec, cause: event_pb2.Event, ctx: JobContext, signal: StopSignal) -> None:
        self.spec, self.cause, self.ctx, self.signal = spec, cause, ctx, signal
        self.reporter = Reporter(self)
        self._state = CopyState()
        self._hasher: Any = hashlib.sha256()
        self._checkpointed = 0
        self._written_before = 0  # by the worker whose checkpoint this attempt resumed
        self._resumable = False

    def publish(self, payload: Message, topic: Any = None) -> None:
        event = events.child_of(self.cause, payload, source=SERVICE)
        self.ctx.publisher.publish(event, topic=topic or self.ctx.topics.progress, key=self.spec.transfer_id)

    def run(self) -> Outcome:
        """Never raises: the worker decides on the request's offset from the outcome alone."""
        extra = {"transfer_id": self.spec.transfer_id}
        try:
            outcome = self._run_to_outcome()
        except (DeliveryError, KafkaException) as exc:
            log.error("cannot publish to Kafka: %s", exc, extra=extra)
            outcome = Outcome.RETRY
        except Exception:
            log.exception("transfer job failed", extra=extra)
            outcome = Outcome.RETRY
        DISKS.labels(outcome.value).inc()
        log.info("transfer %s: %s", self.spec.transfer_id, outcome.value, extra=extra)
        return outcome

    def _run_to_outcome(self) -> Outcome:
        try:
            return self._run()
        except Interrupted:
            self._checkpoint_on_interrupt()
            return Outcome.INTERRUPTED
        except TransferError as exc:
            return self._fail(exc)
        except (DeliveryError, KafkaException):
            raise
        except Exception as exc:
            log.exception("transfer failed unexpectedly", extra={"transfer_id": self.spec.transfer_id})
            return self._fail(TransferError(f"internal error in the transfer worker ({type(exc).__name__}); "
                                            "retrying may help, else report a bug", retryable=True))

    def _run(self) -> Outcome:
        started = time.monotonic()
        spec = self.spec
        self.signal.check()
        previous = self.ctx.checkpoints.load(spec.transfer_id)
        sink = open_sink(spec, self.ctx, self.signal)
        self._resumable = sink.resumable
        start, why = decide(spec, previous, sink.resumable)
        log.info("transfer %s: %s (%s)", spec.transfer_id, start.value, why, extra={"transfer_id": spec.transfer_id})
        if start is Start.DUPLICATE:
            return Outcome.DUPLICATE  # no event at all: its result was published by the first delivery
        self.reporter.update(0, Phase.TRANSFER_PHASE_CONNECTING)
        source = open_source(spec, self.ctx)
        finished = False
        try:
            check_size(source.open(), spec.size, f"source {spec.source.describe()}")
            self.signal.check()
            if start is Start.RESUME and previous is not None:
                self._verify_resume(sink, previous)
            sink.open(spec.size, self._state.offset)
            result = self._copy(source, sink)
            if self.signal.lost:
                # The partition is someone else's now: their copy publishes the result, not this one.
                raise Interrupted("partition lost at the end of the copy")
            self.reporter.update(spec.size, Phase.TRANSFER_PHASE_FINISHING)
            sink.finish()
            finished = True
        finally:
            source.close()
            if not finished:
                sink.abort()
        self._complete(result, time.monotonic() - started)
        log.info("transfer %s copied %d bytes in %.2f s (%.2f s waiting for the source), %d read, %d written",
                 spec.transfer_id, spec.size - result.resumed_from, result.seconds, result.waited_seconds,
                 result.bytes_read, result.state.bytes_written, extra={"transfer_id": spec.transfer_id})
        return Outcome.COMPLETED

    def _copy(self, source: Source, sink: Sink) -> CopyResult:
        self.reporter.update(self._state.offset, Phase.TRANSFER_PHASE_COPYING)
        copier = Copier(source, sink, self.spec.size, self.ctx.copy_options(), self.signal, bucket=self.ctx.bucket,
                        on_tick=self.reporter.update,
                        on_checkpoint=self._periodic_checkpoint if sink.resumable else None)
        try:
            return copier.run(self._state, self._hasher)
        finally:
            BYTES_READ.inc(copier._read)  # noqa: SLF001 — counted on failure too

    def _verify_resume(self, sink: Sink, cp: Checkpoint) -> None:
        """Re-hash the sink's first `cp.offset` bytes; resume only if they are what was checkpointed."""
        self.reporter.update(0, Phase.TRANSFER_PHASE_VERIFYING)
        hasher, seen = hashlib.sha256(), 0
        for piece in sink.read(cp.offset):
            hasher.update(piece)
            seen += len(piece)
            self.signal.check()
        if seen == cp.offset and hasher.hexdigest() == cp.prefix_sha256:
            self._state = CopyState(cp.offset, cp.bytes_written, cp.bytes_holes)
            self._hasher = hasher
            self._checkpointed = cp.offset
            self._written_before = cp.bytes_written
            return
        log.warning("transfer %s: the sink does not hold the checkpointed bytes; copying from the start",
                    self.spec.transfer_id, extra={"transfer_id": self.spec.transfer_id})

    def _checkpoint(self, state: CopyState, prefix_sha256: str, *, done: bool = False, sha256: str = "",
                    wait: bool = True) -> None:
        spec = self.spec
        self.ctx.checkpoints.save(Checkpoint(
            transfer_id=spec.transfer_id, offset=state.offset, bytes_written=state.bytes_written,
            bytes_holes=state.bytes_holes, prefix_sha256=prefix_sha256, bytes_total=spec.size,
            fingerprint=spec.fingerprint(), attempt=spec.attempt, worker=self.ctx.worker,
            chunk_size=self.ctx.settings.transfer_chunk_bytes, done=done, sha256=sha256), wait=wait)
        self._checkpointed = state.offset

    def _periodic_checkpoint(self, state: CopyState, prefix_sha256: str) -> None:
        self._checkpoint(state, prefix_sha256, wait=False)

    def _checkpoint_on_interrupt(self) -> None:
        # A lost partition may already be copied by its new owner: a late checkpoint could overwrite theirs.
        if self.signal.lost or not self._resumable:
            return
        if self._state.offset > self._checkpointed:
            self._checkpoint(self._state, self._hasher.copy().hexdigest())
        else:
            self.ctx.publisher.flush()  # the last periodic checkpoint must be on the broker before the handover
        log.info("transfer %s interrupted at byte %d; resume point checkpointed", self.spec.transfer_id,
                 self._state.offset, extra={"transfer_id": self.spec.transfer_id})

    def _complete(self, result: CopyResult, seconds: float) -> None:
        spec, state = self.spec, result.state
        BYTES_WRITTEN.inc(state.bytes_written - self._written_before)
        metrics.DISK_TRANSFER_BYTES.labels("completed").inc(spec.size)
        metrics.DISK_TRANSFER_THROUGHPUT.set(0)
        self.publish(transfer_pb2.DiskTransferCompleted(
            transfer_id=spec.transfer_id, plan_id=spec.plan_id, vm_id=spec.vm_id, sha256=result.sha256,
            bytes_total=spec.size, bytes_written=state.bytes_written, bytes_holes=state.bytes_holes,
            bytes_read=result.bytes_read, duration_seconds=seconds, worker=self.ctx.worker,
            resumed_from=result.resumed_from), topic=self.ctx.topics.results)
        # Completed must be durable before the done-checkpoint that makes duplicates skip the disk.
        self.ctx.publisher.flush()
        self._checkpoint(state, result.sha256, done=True, sha256=result.sha256)

    def _fail(self, exc: TransferError) -> Outcome:
        spec = self.spec
        log.warning("transfer %s failed: %s", spec.transfer_id, exc.reason, extra={"transfer_id": spec.transfer_id})
        try:
            if isinstance(exc, Canceled):
                self.ctx.checkpoints.delete(spec.transfer_id)  # a canceled disk starts over if requested again
            self.publish(transfer_pb2.DiskTransferFailed(
                transfer_id=spec.transfer_id, plan_id=spec.plan_id, vm_id=spec.vm_id, reason=exc.reason,
                retryable=exc.retryable, worker=self.ctx.worker, code=exc.code), topic=self.ctx.topics.results)
            self.ctx.publisher.flush()
        except (DeliveryError, KafkaException) as err:
            log.error("cannot publish the failure: %s", err, extra={"transfer_id": spec.transfer_id})
            return Outcome.RETRY
        return Outcome.FAILED


def open_source(spec: TransferSpec, ctx: JobContext) -> Source:
    if isinstance(spec.source, LocalFile):
        return LocalFileSource(spec.source.path)
    file = spec.source
    try:
        # Opened per disk: a provider registered after the worker started is found.
        providers = ProviderStore(ctx.provider_dir)
        record = providers.get(file.provider_id)
    except ProviderNotFound:
        raise InvalidRequest(f"provider {file.provider_id!r} is not in this worker's provider store "
                             f"({ctx.provider_dir}): register it, then retry the disk") from None
    except (OSError, ValueError, TypeError) as exc:
        raise SourceError(f"the provider store {ctx.provider_dir} cannot be read ({type(exc).__name__}): "
                          "check the worker's MTV_PROVIDER_DIR mount", retryable=True) from None

    def password() -> str:
        try:
            return providers.password(record)
        except OSError:
            raise SourceAuthFailed(f"no password is stored for provider {record.name!r}: store it, then retry "
                                   "the disk") from None

    return VsphereSource(file, record, password, concurrency=ctx.settings.transfer_concurrency)


def open_sink(spec: TransferSpec, ctx: JobContext, signal: StopSignal) -> Sink:
    if not isinstance(spec.sink, CdiUploadSpec):
        return LocalFileSink(spec.sink.path)
    sink = spec.sink
    ref = sink.token_ref
    if not ref:
        return CdiUploadSink(sink, lambda: _requested_token(sink, ctx.settings, signal),
                             f"an UploadTokenRequest for {sink.namespace}/{sink.pvc_name}")
    if not SECRET_NAME.match(ref):
        raise InvalidRequest(f"sink.cdi_upload.token_ref {ref!r} is not a secret name")
    return CdiUploadSink(sink, lambda: _secret_token(ref, ctx.settings.secret_dir), f"secret {ref!r}")


def _secret_token(ref: str, secret_dir: Path) -> str:
    """A static token (sink.cdi_upload.token_ref): an explicit override of the per-copy token request."""
    try:
        return (secret_dir / ref).read_text().strip()
    except OSError:
        raise SinkRejected(f"upload token secret {ref!r} is not available to the transfer worker "
                           f"({secret_dir}): create it, then retry the disk") from None


def _requested_token(sink: CdiUploadSpec, settings: TransferSettings, signal: StopSignal) -> str:
    """A new token for this copy from the cluster, once CDI's upload server for the PVC is ready."""
    from mtv.transfer.cdi_tokens import fresh_token  # the kubernetes client only where uploads happen

    def sleep(seconds: float) -> None:
        signal.wait(seconds)
        signal.check()  # a cancel or a stopping worker ends the wait at once

    log.info("waiting for DataVolume %s/%s to be UploadReady, then requesting an upload token", sink.namespace,
             sink.pvc_name)
    return fresh_token(sink.namespace, sink.pvc_name, kubeconfig=settings.transfer_kubeconfig, context=sink.context,
                       timeout=settings.transfer_upload_ready_timeout, sleep=sleep)
