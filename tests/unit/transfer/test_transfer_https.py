"""TLS policies of the transfer worker's HTTPS connections, against an in-process HTTPS server."""

from __future__ import annotations

import hashlib
import ssl
from collections.abc import Iterator

import pytest

from fixtures.cdi_upload import PATH, CdiUploadServer
from mtv.transfer.https import ConnectionPerThread, TlsMismatch, TlsPolicy


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CdiUploadServer]:
    s = CdiUploadServer(tmp_path_factory.mktemp("https"), token="t0ken")
    yield s
    s.close()


def _port(server: CdiUploadServer) -> int:
    return int(server.url.split(":")[2].split("/")[0])


def _pin(server: CdiUploadServer) -> str:
    der = ssl.PEM_cert_to_DER_cert(server.ca_pem)
    return ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())


def _status(policy: TlsPolicy, server: CdiUploadServer) -> int:
    conns = ConnectionPerThread("127.0.0.1", _port(server), policy, timeout=10)
    try:
        response = conns.request("POST", PATH, {"Authorization": "Bearer t0ken", "Content-Length": "0"})
        response.read()
        return response.status
    finally:
        conns.close_all()


def test_pinned_thumbprint_accepts_the_server_and_rejects_another(server: CdiUploadServer) -> None:
    assert _status(TlsPolicy(thumbprint=_pin(server)), server) == 200
    assert _status(TlsPolicy(thumbprint=_pin(server).replace(":", "").lower()), server) == 200
    with pytest.raises(TlsMismatch):
        _status(TlsPolicy(thumbprint=":".join(["00"] * 32)), server)


def test_ca_pem_and_insecure_and_the_default_trust_store(server: CdiUploadServer) -> None:
    assert _status(TlsPolicy(ca_pem=server.ca_pem), server) == 200
    assert _status(TlsPolicy(insecure=True), server) == 200
    with pytest.raises(ssl.SSLCertVerificationError):
        _status(TlsPolicy(), server)  # a self-signed certificate is not in the system store


def test_a_connection_is_kept_alive_per_thread(server: CdiUploadServer) -> None:
    conns = ConnectionPerThread("127.0.0.1", _port(server), TlsPolicy(ca_pem=server.ca_pem), timeout=10)
    try:
        for _ in range(3):
            response = conns.request("POST", PATH, {"Authorization": "Bearer t0ken", "Content-Length": "0"})
            response.read()
        assert len(conns._all) == 1  # noqa: SLF001
    finally:
        conns.close_all()
