"""CDI upload rules: when a DataVolume takes an upload, the bounded wait, the proxy URL, what API answers
mean for the user, and that the sink takes its token only when it opens the upload."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fixtures.cdi_upload import PATH, CdiUploadServer
from mtv.transfer.cdi_upload import (
    DV_RESOURCE,
    UPLOAD_TOKEN_RESOURCE,
    ApiCall,
    Readiness,
    api_error,
    readiness,
    token_from,
    token_request,
    upload_url,
    wait_until_ready,
)
from mtv.transfer.copier import StopSignal
from mtv.transfer.errors import Canceled, SinkRejected, SinkUnavailable
from mtv.transfer.sinks import CdiUploadSink
from mtv.transfer.spec import CdiUploadSpec


def _dv(phase: str | None) -> dict[str, object]:
    return {"metadata": {"name": "vm1-disk-0"}, "status": {"phase": phase} if phase else {}}


@pytest.mark.parametrize(("dv", "annotations", "ready", "seen"), [
    (None, None, False, "does not exist yet"),
    (_dv(None), None, False, "no phase yet"),
    (_dv("Pending"), None, False, "phase Pending"),
    (_dv("UploadScheduled"), None, False, "phase UploadScheduled"),
    (_dv("UploadReady"), None, True, "phase UploadReady"),
    # virtctl's other signal: the upload controller's annotations on the PVC.
    (_dv("UploadScheduled"), {"cdi.kubevirt.io/storage.pod.phase": "Running",
                              "cdi.kubevirt.io/storage.pod.ready": "true"}, True, "annotations"),
    (_dv("UploadScheduled"), {"cdi.kubevirt.io/storage.pod.phase": "Running",
                              "cdi.kubevirt.io/storage.pod.ready": "false"}, False, "phase UploadScheduled"),
    (_dv("UploadScheduled"), {"cdi.kubevirt.io/storage.pod.phase": "Pending",
                              "cdi.kubevirt.io/storage.pod.ready": "true"}, False, "phase UploadScheduled"),
])
def test_readiness_waits_for_upload_ready_or_a_running_ready_upload_pod(
        dv: dict[str, object] | None, annotations: dict[str, str] | None, ready: bool, seen: str) -> None:
    state = readiness("ns1", "vm1-disk-0", dv, annotations)
    assert state.ready is ready and not state.fatal
    assert seen in state.seen


@pytest.mark.parametrize(("phase", "words"), [
    ("WaitForFirstConsumer", ["ns1/vm1-disk-0", "cdi.kubevirt.io/storage.bind.immediate.requested=true",
                              "volumeBindingMode Immediate"]),
    ("PendingPopulation", ["ns1/vm1-disk-0", "storage.bind.immediate.requested"]),
    ("Failed", ["kubectl describe dv -n ns1 vm1-disk-0", "retry the disk"]),
    ("Succeeded", ["already holds", "delete it"]),
])
def test_phases_where_waiting_cannot_help_are_fatal_with_a_fix(phase: str, words: list[str]) -> None:
    state = readiness("ns1", "vm1-disk-0", _dv(phase))
    assert not state.ready
    for word in words:
        assert word in state.fatal


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def _probes(*states: Readiness) -> Iterator[Readiness]:
    yield from states
    while True:
        yield states[-1]


def test_wait_polls_until_ready_and_reports_the_time_waited() -> None:
    clock = FakeClock()
    states = _probes(Readiness(False, "the DataVolume does not exist yet"), Readiness(False, "phase Pending"),
                     Readiness(True, "phase UploadReady"))
    waited = wait_until_ready(lambda: next(states), "ns1/dv", timeout=60, interval=2, clock=clock, sleep=clock.sleep)
    assert waited == 4.0 and clock.sleeps == [2, 2]


def test_wait_is_bounded_and_says_what_to_check() -> None:
    clock = FakeClock()
    states = _probes(Readiness(False, "phase UploadScheduled"))
    with pytest.raises(SinkUnavailable) as info:
        wait_until_ready(lambda: next(states), "ns1/vm1-disk-0", timeout=5, interval=2, clock=clock,
                         sleep=clock.sleep)
    assert clock.sleeps == [2, 2, 1]  # the last sleep is cut to the deadline
    reason = info.value.reason
    assert info.value.retryable
    for word in ("DataVolume ns1/vm1-disk-0", "UploadReady within 5 s", "last seen: phase UploadScheduled",
                 "kubectl get pods -n cdi", "kubectl get pvc -n ns1 vm1-disk-0", "kubectl describe dv -n ns1",
                 "MTV_TRANSFER_UPLOAD_READY_TIMEOUT"):
        assert word in reason


def test_wait_stops_at_a_fatal_state_and_when_sleep_raises() -> None:
    clock = FakeClock()
    with pytest.raises(SinkRejected, match="is WaitForFirstConsumer"):
        wait_until_ready(lambda: readiness("ns", "d", _dv("WaitForFirstConsumer")), "ns/d", timeout=60,
                         clock=clock, sleep=clock.sleep)
    assert clock.sleeps == []

    signal = StopSignal()
    signal.cancel("user asked")

    def sleep(seconds: float) -> None:
        signal.check()

    with pytest.raises(Canceled):
        wait_until_ready(lambda: Readiness(False, "phase Pending"), "ns/d", timeout=60, clock=clock, sleep=sleep)


@pytest.mark.parametrize(("given", "url"), [
    ("cdi-uploadproxy.example.com", "https://cdi-uploadproxy.example.com/v1beta1/upload"),
    ("https://127.0.0.1:8443", "https://127.0.0.1:8443/v1beta1/upload"),
    ("https://127.0.0.1:8443/", "https://127.0.0.1:8443/v1beta1/upload"),
    ("https://proxy:443/v1beta1/upload", "https://proxy:443/v1beta1/upload"),
    ("https://gw.example.com/cdi", "https://gw.example.com/cdi/v1beta1/upload"),
    (" proxy.local:31001 ", "https://proxy.local:31001/v1beta1/upload"),
])
def test_upload_url_is_built_as_virtctl_builds_it(given: str, url: str) -> None:
    assert upload_url(given) == url


@pytest.mark.parametrize("bad", ["", "http://proxy:80", "https://"])
def test_upload_url_refuses_what_is_not_an_https_proxy(bad: str) -> None:
    with pytest.raises(ValueError):
        upload_url(bad)


TOKEN_CALL = ApiCall("create", UPLOAD_TOKEN_RESOURCE, "ns1", "vm1-disk-0")


def test_403_on_uploadtokenrequests_says_what_to_grant_where() -> None:
    err = api_error(TOKEN_CALL, 403, 'uploadtokenrequests.upload.cdi.kubevirt.io is forbidden: User "w"')
    assert isinstance(err, SinkRejected) and not err.retryable
    assert err.code == "sink_rejected"
    for word in ("may not create uploadtokenrequests.upload.cdi.kubevirt.io in namespace ns1", "grant",
                 "kubectl create role mtv-transfer -n ns1 --verb=create "
                 "--resource=uploadtokenrequests.upload.cdi.kubevirt.io"):
        assert word in err.reason
    dv = api_error(ApiCall("get", DV_RESOURCE, "ns1", "vm1-disk-0"), 403, "forbidden")
    assert "may not get datavolumes.cdi.kubevirt.io in namespace ns1" in dv.reason


@pytest.mark.parametrize(("status", "kind", "retryable", "words"), [
    (401, SinkRejected, False, ["HTTP 401", "MTV_TRANSFER_KUBECONFIG"]),
    (404, SinkRejected, False, ["does not serve upload.cdi.kubevirt.io/v1beta1", "install CDI",
                                "kubectl get apiservice v1beta1.upload.cdi.kubevirt.io"]),
    (503, SinkUnavailable, True, ["cdi-apiserver is not available", "kubectl get pods -n cdi"]),
    (500, SinkUnavailable, True, ["HTTP 500", "boom"]),
    (429, SinkUnavailable, True, ["HTTP 429"]),
    (422, SinkRejected, False, ["refused to create", "HTTP 422", "boom"]),
])
def test_other_api_answers_map_to_typed_errors(status: int, kind: type, retryable: bool, words: list[str]) -> None:
    err = api_error(TOKEN_CALL, status, "boom")
    assert type(err) is kind and err.retryable is retryable
    for word in words:
        assert word in err.reason


def test_the_token_request_and_its_answer() -> None:
    assert token_request("ns1", "vm1-disk-0") == {
        "apiVersion": "upload.cdi.kubevirt.io/v1beta1", "kind": "UploadTokenRequest",
        "metadata": {"name": "vm1-disk-0", "namespace": "ns1"}, "spec": {"pvcName": "vm1-disk-0"}}
    assert token_from({"status": {"token": "eyJhbGciOi"}}, TOKEN_CALL) == "eyJhbGciOi"
    for answer in ({}, {"status": {}}, {"status": {"token": ""}}):
        with pytest.raises(SinkRejected, match="without status.token"):
            token_from(answer, TOKEN_CALL)


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CdiUploadServer]:
    server = CdiUploadServer(tmp_path_factory.mktemp("cdi"), token="fresh-token-1")
    try:
        yield server
    finally:
        server.close()


def test_the_sink_takes_its_token_when_it_opens_and_never_names_it(proxy: CdiUploadServer, tmp_path: Path) -> None:
    spec = CdiUploadSpec(proxy.url, "", "ns1", "vm1-disk-0", proxy.ca_pem)
    asked: list[str] = []

    def token() -> str:
        asked.append("now")
        return "fresh-token-1"

    sink = CdiUploadSink(spec, token, "an UploadTokenRequest for ns1/vm1-disk-0")
    assert asked == []  # not when the request arrives: the token would age while the source is checked
    data = bytes(range(256)) * 64
    sink.open(len(data), 0)
    assert asked == ["now"]
    sink.write(0, memoryview(data), [(0, len(data))])
    sink.finish()
    assert proxy.uploads[-1].status == 200 and proxy.stored.read_bytes() == data

    stale = CdiUploadSink(spec, lambda: "expired-token-value", "an UploadTokenRequest for ns1/vm1-disk-0")
    stale.open(len(data), 0)
    with pytest.raises(SinkRejected) as info:
        stale.write(0, memoryview(data), [(0, len(data))])
        stale.finish()
    assert "an UploadTokenRequest for ns1/vm1-disk-0" in info.value.reason and "HTTP 401" in info.value.reason
    assert "expired-token-value" not in info.value.reason
    assert PATH in proxy.url
