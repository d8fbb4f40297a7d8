"""gRPC InventoryService: register providers, answer inventory queries. Protobuf only at this edge.

Errors carry a status code and a message that names the problem: INVALID_ARGUMENT (bad field),
ALREADY_EXISTS, NOT_FOUND, UNAVAILABLE (the provider has not finished a discovery, with its status).
The port is plaintext: bind it to loopback (the default) or put it behind a TLS proxy, since
AddProvider carries a password once.
"""

from __future__ import annotations

import contextlib
import logging
from concurrent import futures
from typing import NoReturn

import grpc

from mtv.inventory import query
from mtv.inventory.errors import PHASE_NAMES, SECRETS
from mtv.inventory.objects import Datastore, Host, Network, datastore_to_proto, host_to_proto, network_to_proto
from mtv.inventory.providers import ProviderManager
from mtv.inventory.publish import provider_to_proto
from mtv.inventory.state import ProviderState
from mtv.inventory.tls import format_thumbprint
from mtv.model import ConcernCategory, PowerState, Vm, vm_to_proto
from mtv.provider_store import ProviderError, ProviderExists, ProviderNotFound, ProviderRecord
from mtv.v1 import common_pb2, inventory_pb2, inventory_service_pb2, inventory_service_pb2_grpc

log = logging.getLogger(__name__)
pb = inventory_service_pb2
_POWER = {common_pb2.POWER_STATE_ON: PowerState.ON, common_pb2.POWER_STATE_OFF: PowerState.OFF,
          common_pb2.POWER_STATE_SUSPENDED: PowerState.SUSPENDED}
_CATEGORY = {common_pb2.CONCERN_CATEGORY_CRITICAL: ConcernCategory.CRITICAL,
             common_pb2.CONCERN_CATEGORY_WARNING: ConcernCategory.WARNING,
             common_pb2.CONCERN_CATEGORY_INFORMATION: ConcernCategory.INFORMATION}


def _abort(context: grpc.ServicerContext, code: grpc.StatusCode, message: str) -> NoReturn:
    context.abort(code, message)
    raise AssertionError("context.abort returned")  # it raises; this keeps type checkers honest


def record_from_request(request: pb.AddProviderRequest) -> ProviderRecord:
    p = request.provider
    if p.type not in (inventory_pb2.PROVIDER_TYPE_UNSPECIFIED, inventory_pb2.PROVIDER_TYPE_VSPHERE):
        raise ProviderError(f"type {inventory_pb2.ProviderType.Name(p.type)}: only vSphere providers are supported")
    thumbprint = p.thumbprint.strip()
    with contextlib.suppress(ValueError):  # left as given: the store's validation names the field
        thumbprint = format_thumbprint(thumbprint) if thumbprint else ""
    return ProviderRecord(id="", name=p.name, type="vsphere", url=p.url.strip(), username=p.username,
                          thumbprint=thumbprint, insecure_skip_verify=p.insecure_skip_verify)


class InventoryServicer(inventory_service_pb2_grpc.InventoryServiceServicer):
    def __init__(self, manager: ProviderManager, sync_wait_seconds: float = 10.0) -> None:
        self.manager = manager
        self.sync_wait_seconds = sync_wait_seconds

    # -- providers -------------------------------------------------------------------------------

    def AddProvider(self, request: pb.AddProviderRequest, context: grpc.ServicerContext) -> pb.AddProviderResponse:  # noqa: N802
        SECRETS.add(request.password)
        try:
            record = self.manager.add(record_from_request(request), request.password, request.ca_pem)
        except ProviderExists as exc:
            _abort(context, grpc.StatusCode.ALREADY_EXISTS, str(exc))
        except ProviderError as exc:
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        log.info("provider %s added: %s as %s", record.name, record.url, record.username,
                 extra={"provider": record.name})
        return pb.AddProviderResponse(provider=provider_to_proto(record))

    def ListProviders(  # noqa: N802
        self, request: pb.ListProvidersRequest, context: grpc.ServicerContext
    ) -> pb.ListProvidersResponse:
        out = []
        for record in self.manager.records():
            _, state = self.manager.find(record.id)
            out.append(self._with_status(record, state))
        return pb.ListProvidersResponse(providers=out)

    def GetProvider(self, request: pb.GetProviderRequest, context: grpc.ServicerContext) -> pb.GetProviderResponse:  # noqa: N802
        record, state = self._provider(request.name, context, wait=False)
        return pb.GetProviderResponse(provider=self._with_status(record, state))

    @staticmethod
    def _with_status(record: ProviderRecord, state: ProviderState) -> pb.ProviderWithStatus:
        status = state.status
        return pb.ProviderWithStatus(provider=provider_to_proto(record), phase=status.phase, reason=status.reason,
                                     vm_count=len(state.items(Vm)))

    def _provider(
        self, name: str, context: grpc.ServicerContext, wait: bool = True
    ) -> tuple[ProviderRecord, ProviderState]:
        if not name:
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "provider: required (a provider name or id)")
        try:
            record, state = self.manager.find(name)
        except ProviderNotFound as exc:
            _abort(context, grpc.StatusCode.NOT_FOUND, str(exc))
        if wait and not state.synced.wait(self.sync_wait_seconds):
            status = state.status
            _abort(context, grpc.StatusCode.UNAVAILABLE,
                   f"provider {record.name!r} has no inventory yet: {PHASE_NAMES.get(status.phase, '?')}: "
                   f"{status.reason}")
        return record, state

    # -- inventory -------------------------------------------------------------------------------

    def ListVms(self, request: pb.ListVmsRequest, context: grpc.ServicerContext) -> pb.ListVmsResponse:  # noqa: N802
        _, state = self._provider(request.provider, context)
        flt = query.VmFilter(name_glob=request.name_glob, power_state=_POWER.get(request.power_state),
                             folder=request.folder, concern_category=_CATEGORY.get(request.concern_category))
        vms = query.select(state.items(Vm), lambda v: query.vm_matches(v, flt))  # type: ignore[arg-type]
        page = self._page(vms, request.page, context)
        return pb.ListVmsResponse(vms=[vm_to_proto(v) for v in page.items], next_page_token=page.next_token,
                                  total=page.total)

    def GetVm(self, request: pb.GetVmRequest, context: grpc.ServicerContext) -> pb.GetVmResponse:  # noqa: N802
        record, state = self._provider(request.provider, context)
        try:
            vm = query.find_vm(state.items(Vm), request.id_or_name)  # type: ignore[arg-type]
        except query.QueryError as exc:
            _abort(context, grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        except LookupError as exc:
            _abort(context, grpc.StatusCode.NOT_FOUND, f"provider {record.name!r}: {exc}")
        return pb.GetVmResponse(vm=vm_to_proto(vm))

    def ListHosts(self, request: pb.ListHostsRequest, context: grpc.ServicerContext) -> pb.ListHostsResponse:  # noqa: N802
        page = self._list(request, Host, context)
        return pb.ListHostsResponse(hosts=[host_to_proto(h) for h in page.items],  # type: ignore[arg-type]
                                    next_page_token=page.next_token, total=page.total)

    def ListNetworks(self, request: pb.ListNetworksRequest, context: grpc.ServicerContext) -> pb.ListNetworksResponse:  # noqa: N802
        page = self._list(request, Network, context)
        return pb.ListNetworksResponse(networks=[network_to_proto(n) for n in page.items],  # type: ignore[arg-type]
                                       next_page_token=page.next_token, total=page.total)

    def ListDatastores(  # noqa: N802
        self, request: pb.ListDatastoresRequest, context: grpc.ServicerContext
    ) -> pb.ListDatastoresResponse:
        page = self._list(request, Datastore, context)
        return pb.ListDatastoresResponse(datastores=[datastore_to_proto(d) for d in page.items],  # type: ignore[arg-type]
                                         next_page_token=page.next_token, total=page.total)

    def _list(self, request: pb.ListHostsRequest | pb.ListNetworksRequest | pb.ListDatastoresRequest, cls: type,
              context: grpc.ServicerContext) -> query.Page:  # type: ignore[type-arg]
        _, state = self._provider(request.provider, context)
        items = query.select(state.items(cls), lambda i: query.name_matches(i.name, request.name_glob))  # type: ignore[arg-type]
        return self._page(items, request.page, context)

    @staticmethod
    def _page(items: list, page: pb.Page, context: grpc.ServicerContext) -> query.Page:  # type: ignore[type-arg]
        try:
            return query.paginate(items, page.page_size, page.page_token)
        except query.QueryError as exc:
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))


def serve(manager: ProviderManager, host: str, port: int, sync_wait_seconds: float = 10.0,
          workers: int = 8) -> tuple[grpc.Server, int]:
    """Start the gRPC server; return it and the bound port (useful with port 0)."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="grpc"))
    inventory_service_pb2_grpc.add_InventoryServiceServicer_to_server(
        InventoryServicer(manager, sync_wait_seconds), server)
    try:
        bound = server.add_insecure_port(f"{host}:{port}")
    except RuntimeError:
        bound = 0
    if not bound:
        raise OSError(f"cannot listen for gRPC on {host}:{port} (MTV_GRPC_PORT); is the port taken?")
    server.start()
    return server, bound
