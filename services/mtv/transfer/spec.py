"""A disk transfer request as plain dataclasses (protobuf stays at the edge), validated once."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from urllib.parse import quote, urlencode, urlparse

from mtv.transfer.errors import InvalidRequest
from mtv.v1 import transfer_pb2


@dataclass(frozen=True)
class VsphereFile:
    """A flat disk file on a datastore, read over `/folder` with the provider's session."""

    provider_id: str
    datacenter: str
    datastore: str
    path: str

    def folder_url_path(self) -> str:
        """`/folder/<path>?dcPath=..&dsName=..`, relative to the vCenter host."""
        query = urlencode({"dcPath": self.datacenter, "dsName": self.datastore})
        return f"/folder/{quote(self.path.lstrip('/'))}?{query}"

    def describe(self) -> str:
        return f"[{self.datastore}] {self.path} in {self.datacenter}"


@dataclass(frozen=True)
class LocalFile:
    path: str

    def describe(self) -> str:
        return self.path


@dataclass(frozen=True)
class FileSinkSpec:
    path: str


@dataclass(frozen=True)
class CdiUploadSpec:
    url: str
    token_ref: str  # name of a secret holding a static token, never the token; "" = request one per copy
    namespace: str
    pvc_name: str
    ca_pem: str = ""
    insecure_skip_verify: bool = False
    context: str = ""  # kubeconfig context of the target cluster; "" = current


Source = VsphereFile | LocalFile
Sink = FileSinkSpec | CdiUploadSpec


@dataclass(frozen=True)
class TransferSpec:
    transfer_id: str
    plan_id: str
    vm_id: str
    disk_key: int
    source: Source
    sink: Sink
    size: int
    attempt: int = 1

    def fingerprint(self) -> str:
        """Identifies what is copied where: a checkpoint only resumes a copy with the same fingerprint."""
        text = repr((self.source, self.sink, self.size))
        return hashlib.sha256(text.encode()).hexdigest()[:32]


def from_proto(req: transfer_pb2.DiskTransferRequested) -> TransferSpec:
    """Validate a request; raise InvalidRequest naming the field to fix."""
    if not req.transfer_id:
        raise InvalidRequest("transfer_id is empty")
    if req.size_bytes <= 0:
        raise InvalidRequest("size_bytes must be the disk's logical size in bytes (> 0)")
    return TransferSpec(
        transfer_id=req.transfer_id,
        plan_id=req.plan_id,
        vm_id=req.vm_id,
        disk_key=req.disk_key,
        source=_source(req.source),
        sink=_sink(req.sink),
        size=req.size_bytes,
        attempt=max(1, req.attempt),
    )


def _source(src: transfer_pb2.DiskSource) -> Source:
    kind = src.WhichOneof("kind")
    if kind == "vsphere":
        v = src.vsphere
        missing = [n for n in ("provider_id", "datacenter_path", "datastore_name", "path") if not getattr(v, n)]
        if missing:
            raise InvalidRequest(f"source.vsphere: {', '.join(missing)} must be set")
        return VsphereFile(v.provider_id, v.datacenter_path, v.datastore_name, v.path)
    if kind == "file":
        if not os.path.isabs(src.file.path):
            raise InvalidRequest(f"source.file.path {src.file.path!r} must be an absolute path")
        return LocalFile(src.file.path)
    raise InvalidRequest("source is not set: give source.vsphere (datastore file) or source.file")


def _sink(sink: transfer_pb2.DiskSink) -> Sink:
    kind = sink.WhichOneof("kind")
    if kind == "file":
        if not os.path.isabs(sink.file.path):
            raise InvalidRequest(f"sink.file.path {sink.file.path!r} must be an absolute path")
        return FileSinkSpec(sink.file.path)
    if kind == "cdi_upload":
        c = sink.cdi_upload
        url = urlparse(c.url)
        if url.scheme != "https" or not url.hostname:
            raise InvalidRequest(f"sink.cdi_upload.url {c.url!r}: expected https://HOST[:PORT]/v1beta1/upload")
        if not c.namespace or not c.pvc_name:
            raise InvalidRequest("sink.cdi_upload.namespace and pvc_name must name the PVC to upload to")
        return CdiUploadSpec(c.url, c.token_ref, c.namespace, c.pvc_name, c.ca_pem, c.insecure_skip_verify,
                             c.context)
    raise InvalidRequest("sink is not set: give sink.file (sparse raw file) or sink.cdi_upload")
