"""Settings of `mtv-transfer` (environment, prefix MTV_), and the topics it uses."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, replace
from pathlib import Path

from pydantic import Field

from mtv import topics
from mtv.runtime.settings import ServiceSettings

MiB = 1 << 20


class TransferSettings(ServiceSettings):
    transfer_group_id: str = Field("mtv-transfer", description="consumer group of the worker pool")
    # Tests and benchmarks run isolated pools on one broker by prefixing every transfer topic.
    transfer_topic_prefix: str = Field("", description="prefix for the transfer topics (tests)")
    provider_dir: Path = Field(Path(".run/providers"), description="provider store (MTV_PROVIDER_DIR)")
    secret_dir: Path = Field(Path(".run/secrets"), description="upload tokens by token_ref (MTV_SECRET_DIR)")
    # CDI upload tokens are per PVC and short-lived, so the worker requests one per copy from the target.
    transfer_kubeconfig: str = Field("", description="kubeconfig of the target cluster for CDI upload tokens "
                                                     "(empty: $KUBECONFIG, else the in-cluster ServiceAccount)")
    transfer_upload_ready_timeout: float = Field(600.0, gt=0, description="seconds to wait for a DataVolume to "
                                                                          "become UploadReady")
    transfer_chunk_bytes: int = Field(8 * MiB, ge=64 * 1024, description="bytes per ranged read")
    transfer_concurrency: int = Field(4, ge=1, le=64, description="parallel ranged reads per disk")
    transfer_hole_block: int = Field(4096, ge=512, description="granularity of hole detection")
    transfer_checkpoint_chunks: int = Field(8, ge=1, description="checkpoint every N chunks")
    transfer_checkpoint_seconds: float = Field(10.0, gt=0, description="... or every N seconds")
    transfer_bandwidth: int = Field(0, ge=0, description="bytes/s per worker from sources, 0 = unlimited")
    # Short enough that a killed worker's disks move within seconds; the broker's minimum is 6 s.
    transfer_session_timeout_ms: int = Field(10_000, ge=6_000)
    transfer_cancel_lookback_seconds: int = Field(24 * 3600, description="cancels older than this are ignored")
    transfer_status_seconds: float = Field(2.0, gt=0, le=60, description="worker status on the workers topic "
                                           "at least this often (hand-off to idle peers, mtvctl status)")
    transfer_worker_name: str = Field("", description="name in events; default host/pid")

    def worker_name(self) -> str:
        return self.transfer_worker_name or self.instance_id or f"{socket.gethostname()}/{os.getpid()}"

    def topics(self) -> TransferTopics:
        return TransferTopics.with_prefix(self.transfer_topic_prefix)


@dataclass(frozen=True)
class TransferTopics:
    requests: topics.Topic = topics.TRANSFER_REQUESTS
    cancels: topics.Topic = topics.TRANSFER_CANCELS
    progress: topics.Topic = topics.TRANSFER_PROGRESS
    results: topics.Topic = topics.TRANSFER_RESULTS
    checkpoints: topics.Topic = topics.TRANSFER_CHECKPOINTS
    workers: topics.Topic = topics.TRANSFER_WORKERS

    @classmethod
    def with_prefix(cls, prefix: str) -> TransferTopics:
        base = cls()
        if not prefix:
            return base
        return cls(*(replace(t, name=prefix + t.name) for t in base.all()))

    def all(self) -> tuple[topics.Topic, ...]:
        return (self.requests, self.cancels, self.progress, self.results, self.checkpoints, self.workers)
