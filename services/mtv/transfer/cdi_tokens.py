"""The Kubernetes calls of a CDI upload: read the DataVolume (and its PVC), request an upload token.

A thin adapter around the kubernetes client; the decisions are in `cdi_upload`. The kubeconfig is
MTV_TRANSFER_KUBECONFIG, else $KUBECONFIG, else the pod's ServiceAccount (in-cluster), and is read
afresh for every disk, so rotated credentials need no restart. The request names the context (the
plan's target.context); without one, the kubeconfig's current context is used.

The token is returned to the caller only; it is never logged and never part of an exception
(the client's ApiException text would include bodies and headers, so it is never formatted).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from mtv.transfer.cdi_upload import (
    DV_API,
    DV_RESOURCE,
    UPLOAD_API,
    UPLOAD_TOKEN_RESOURCE,
    ApiCall,
    Readiness,
    api_error,
    readiness,
    token_from,
    token_request,
    wait_until_ready,
)
from mtv.transfer.errors import SinkRejected, SinkUnavailable


def api_client(kubeconfig: str = "", context: str = "") -> client.ApiClient:
    """A client from `kubeconfig` (else $KUBECONFIG) at `context` (else its current one), else the
    in-cluster ServiceAccount."""
    path = kubeconfig or os.environ.get("KUBECONFIG", "")
    try:
        if path:
            return config.new_client_from_config(config_file=path, context=context or None)
        configuration = client.Configuration()
        config.load_incluster_config(client_configuration=configuration)
        return client.ApiClient(configuration)
    except (config.ConfigException, OSError) as exc:
        where = path or "the in-cluster ServiceAccount (no MTV_TRANSFER_KUBECONFIG or KUBECONFIG set)"
        at = f" at context {context!r}" if context and path else ""
        raise SinkRejected(f"cannot load the Kubernetes credentials of the transfer worker from {where}{at} "
                           f"({type(exc).__name__}): set MTV_TRANSFER_KUBECONFIG to a kubeconfig with the plan's "
                           "target context, then retry the disk") from None


def _status_message(exc: ApiException) -> str:
    try:
        return str(json.loads(exc.body or "{}").get("message", "") or exc.reason or "")
    except (ValueError, AttributeError):
        return str(exc.reason or "")


class CdiTokens:
    """Reads DataVolumes and requests upload tokens through one API client."""

    def __init__(self, api: client.ApiClient) -> None:
        self._api = api
        self._custom = client.CustomObjectsApi(api)
        self._core = client.CoreV1Api(api)
        self._host = str(api.configuration.host)

    def _call(self, call: ApiCall, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except ApiException as exc:
            raise api_error(call, exc.status or 0, _status_message(exc)) from None
        except (HTTPError, OSError) as exc:
            raise SinkUnavailable(f"cannot reach the Kubernetes API server {self._host} to {call.doing} "
                                  f"({type(exc).__name__}): check the worker's kubeconfig and network",
                                  retryable=True) from None

    def probe(self, namespace: str, name: str) -> Readiness:
        """One look at the DataVolume; its PVC's annotations only when the DataVolume is not ready yet,
        and only if this worker may read PVCs (the DataVolume's phase is the documented signal)."""
        group, version, plural = DV_API

        def get_dv() -> dict[str, Any] | None:
            try:
                found: dict[str, Any] = self._custom.get_namespaced_custom_object(group, version, namespace, plural,
                                                                                  name)
                return found
            except ApiException as exc:
                if exc.status == 404:
                    return None  # the converter's apply may not be visible yet
                raise

        dv = self._call(ApiCall("get", DV_RESOURCE, namespace, name), get_dv)
        state = readiness(namespace, name, dv)
        if state.ready or state.fatal or dv is None:
            return state
        return readiness(namespace, name, dv, self._pvc_annotations(namespace, name))

    def _pvc_annotations(self, namespace: str, name: str) -> dict[str, str]:
        try:
            pvc = self._core.read_namespaced_persistent_volume_claim(name, namespace)
        except (ApiException, HTTPError, OSError):
            return {}  # optional evidence: 403/404/unreachable leave the decision to the DataVolume
        return dict(pvc.metadata.annotations or {})

    def request_token(self, namespace: str, pvc_name: str) -> str:
        group, version, plural = UPLOAD_API
        call = ApiCall("create", UPLOAD_TOKEN_RESOURCE, namespace, pvc_name)
        # Content-Type explicitly: this client sends none for custom objects, and cdi-apiserver (go-restful,
        # consumes application/json) answers a POST without one with 415. Raw response: cdi-apiserver
        # answers 200, and the client deserializes only a 201 for create (a 200 would come back as None).
        response = self._call(call, lambda: self._custom.create_namespaced_custom_object(
            group, version, namespace, plural, token_request(namespace, pvc_name),
            _headers={"Content-Type": "application/json"}, _preload_content=False))
        try:
            answer = json.loads(response.data)
        except ValueError:
            answer = {}
        return token_from(answer if isinstance(answer, dict) else {}, call)

    def close(self) -> None:
        self._api.close()


def fresh_token(namespace: str, pvc_name: str, *, kubeconfig: str, timeout: float,
                sleep: Callable[[float], None], interval: float = 2.0, context: str = "") -> str:
    """Wait (bounded) until the DataVolume `namespace/pvc_name` takes an upload, then return a new token for
    it. Raises TransferError subclasses only (and whatever `sleep` raises to stop the wait)."""
    tokens = CdiTokens(api_client(kubeconfig, context))
    try:
        wait_until_ready(lambda: tokens.probe(namespace, pvc_name), f"{namespace}/{pvc_name}", timeout=timeout,
                         interval=interval, sleep=sleep)
        return tokens.request_token(namespace, pvc_name)
    finally:
        tokens.close()
