"""The pyvmomi adapter: log in, read every kind through the PropertyCollector, watch for updates.

All reads go through the PropertyCollector over container views — one `RetrievePropertiesEx` (with
paging) per kind, never attribute access on managed objects: pyvmomi's lazy attributes cost one
round trip each, and the simulator answers unset top-level properties with the wrong type.

Errors leave this module as `ProviderFault` (with the status phase and reason) or `SessionLost`.
"""

from __future__ import annotations

import contextlib
import http.client
import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from pyVim.connect import SmartStubAdapter
from pyVmomi import SoapStubAdapter, vim, vmodl

from mtv.inventory import tls
from mtv.inventory.errors import InsufficientPrivileges, SessionLost, Unreachable, classify, missing_privileges
from mtv.inventory.raw import ObjectUpdate, PropertyChange, RawEntity
from mtv.provider_store import ProviderRecord

log = logging.getLogger(__name__)
PC = vmodl.query.PropertyCollector

# Read-only inventory needs the first two; migrations need the rest (Forklift's vSphere role).
REQUIRED_PRIVILEGES = (
    "System.View", "System.Read", "Sessions.ValidateSession", "Datastore.Browse", "Datastore.FileManagement",
    "VirtualMachine.Interact.PowerOff", "VirtualMachine.Interact.PowerOn",
    "VirtualMachine.Provisioning.DiskRandomRead", "VirtualMachine.Provisioning.GetVmFiles",
    "VirtualMachine.State.CreateSnapshot", "VirtualMachine.State.RemoveSnapshot",
)
VM_PATHS = (
    "name", "parent", "config.template", "config.instanceUuid", "config.guestId", "config.guestFullName",
    "config.firmware", "config.bootOptions.efiSecureBootEnabled", "config.hardware.numCPU",
    "config.hardware.numCoresPerSocket", "config.hardware.memoryMB", "config.hardware.device",
    "config.changeTrackingEnabled", "config.changeVersion", "runtime.powerState", "runtime.host", "guest.net",
    "guest.ipAddress", "guest.toolsRunningStatus", "guest.toolsStatus", "snapshot", "rootSnapshot",
)
# Live updates watch these cheap "trigger" properties of VMs and re-read a VM whole when one changes
# (raw.TRIGGER_TYPES). Watching devices, guest NICs and snapshot trees of thousands of VMs makes the
# collector evaluate all of them on every change (vcsim: seconds per update at 2,000 VMs). Nothing is
# lost: every reconfiguration (devices, CPU, memory, CBT, firmware) bumps config.changeVersion and every
# snapshot change changes rootSnapshot. Not seen: a guest's secondary IPs changing alone.
VM_WATCH_PATHS = (
    "name", "parent", "config.template", "config.changeVersion", "runtime.powerState", "runtime.host",
    "rootSnapshot", "guest.ipAddress", "guest.toolsRunningStatus",
)


@dataclass(frozen=True)
class KindSpec:
    """One kind of object: the container view type and the property paths per (sub)type."""

    name: str
    view_type: type
    props: tuple[tuple[type, tuple[str, ...]], ...]


KINDS: tuple[KindSpec, ...] = (
    KindSpec("datacenter", vim.Datacenter, ((vim.Datacenter, ("name", "parent")),)),
    KindSpec("folder", vim.Folder, ((vim.Folder, ("name", "parent")),)),
    # Clusters are ComputeResources; standalone hosts' ComputeResource is needed to resolve host parents.
    KindSpec("compute", vim.ComputeResource, ((vim.ComputeResource, ("name", "parent")),)),
    KindSpec("host", vim.HostSystem, ((vim.HostSystem, ("name", "parent", "runtime.inMaintenanceMode")),)),
    KindSpec("datastore", vim.Datastore, ((vim.Datastore, (
        "name", "parent", "summary.capacity", "summary.freeSpace", "summary.type")),)),
    KindSpec("network", vim.Network, (
        (vim.Network, ("name", "parent")),
        (vim.dvs.DistributedVirtualPortgroup, ("key", "config.uplink", "config.defaultPortConfig")),
    )),
    KindSpec("vm", vim.VirtualMachine, ((vim.VirtualMachine, VM_PATHS),)),
)
_TYPES = (vim.Datacenter, vim.Folder, vim.ComputeResource, vim.ClusterComputeResource, vim.HostSystem, vim.Datastore,
          vim.Network, vim.dvs.DistributedVirtualPortgroup, vim.OpaqueNetwork, vim.VirtualMachine)
# Collected paths per type name, including those of supertype specs (a portgroup is also a Network).
PATHS: dict[str, frozenset[str]] = {
    t._wsdlName: frozenset(p for k in KINDS for spec_type, paths in k.props if issubclass(t, spec_type) for p in paths)
    for t in _TYPES
}


class VsphereSession:
    """One logged-in session. Not thread-safe except `cancel`, which another thread may call."""

    def __init__(self, record: ProviderRecord, service_instance: Any, content: Any, timeout: float) -> None:
        self.record = record
        self.service_instance = service_instance
        self.content = content
        self.timeout = timeout
        self._views: dict[str, Any] = {}
        self._refs: dict[str, Any] = {}  # moref id → managed object, for targeted re-reads
        self._collector: Any = None
        self._version = ""

    # -- connecting ------------------------------------------------------------------------------

    @classmethod
    def open(cls, record: ProviderRecord, password: str, timeout: float = 30.0) -> VsphereSession:
        """Check the endpoint and its certificate, log in, check privileges. Raises ProviderFault."""
        trust = tls.trust_for(record)
        host, port = tls.host_port(record.url)
        path = urlparse(record.url).path or "/sdk"
        try:
            _probe(record, trust, timeout)
            # Version negotiation reads the public vimServiceVersions.xml; the login goes over `stub`.
            version = SmartStubAdapter(host=host, port=port, path=path, sslContext=trust.discovery,
                                       httpConnectionTimeout=timeout).version
            stub = SoapStubAdapter(host=host, port=port, path=path, version=version, sslContext=trust.session,
                                   thumbprint=trust.pin, httpConnectionTimeout=timeout)
            service_instance = vim.ServiceInstance("ServiceInstance", stub)
            content = service_instance.RetrieveContent()
            content.sessionManager.Login(record.username, password)
        except Exception as exc:  # noqa: BLE001 — every failure becomes a status with a reason
            raise classify(exc, record) from None
        session = cls(record, service_instance, content, timeout)
        try:
            session.check_privileges()
        except BaseException:
            session.close()
            raise
        return session

    def check_privileges(self, required: Iterable[str] = REQUIRED_PRIVILEGES) -> None:
        """Raise InsufficientPrivileges naming what the user lacks on the root folder."""
        manager = self.content.authorizationManager
        if manager is None:  # a standalone ESXi host has no AuthorizationManager privileges API
            return
        required = tuple(required)
        with self._calls():
            try:
                result = manager.HasPrivilegeOnEntities(
                    entity=[self.content.rootFolder], sessionId=self.content.sessionManager.currentSession.key,
                    privId=list(required))
            except (vmodl.fault.MethodNotFound, vmodl.fault.NotSupported):
                log.warning("%s cannot report privileges; skipping the check", self.record.host)
                return
        missing = missing_privileges(result or [], required)
        if missing:
            raise InsufficientPrivileges(
                f"user {self.record.username!r} lacks {', '.join(missing)} on {self.record.host}; "
                "grant them (see the MTV vSphere role)")

    # -- reading ---------------------------------------------------------------------------------

    def retrieve_all(self, page_size: int = 500) -> dict[str, RawEntity]:
        """Every object of every kind: one paged RetrievePropertiesEx per kind."""
        found: dict[str, RawEntity] = {}
        for kind in KINDS:
            with self._calls():
                spec = self._view_spec(kind)
                result = self.content.propertyCollector.RetrievePropertiesEx([spec], PC.RetrieveOptions(
                    maxObjects=page_size))
                while result is not None:
                    found.update(self._entities(result.objects))
                    if not result.token:
                        break
                    result = self.content.propertyCollector.ContinueRetrievePropertiesEx(result.token)
        return found

    def retrieve(self, ids: Iterable[str]) -> dict[str, RawEntity]:
        """Re-read whole objects (known from earlier reads or updates); gone ones are left out."""
        refs = [self._refs[i] for i in ids if i in self._refs]
        if not refs:
            return {}
        with self._calls():
            try:
                return self._retrieve_refs(refs)
            except vmodl.fault.ManagedObjectNotFound:
                # One of them was deleted meanwhile (its "leave" update follows): read them one by one.
                found: dict[str, RawEntity] = {}
                for ref in refs:
                    try:
                        found.update(self._retrieve_refs([ref]))
                    except vmodl.fault.ManagedObjectNotFound:
                        continue
                return found

    def _retrieve_refs(self, refs: list[Any]) -> dict[str, RawEntity]:
        types = {type(r) for r in refs}
        prop_set = [PC.PropertySpec(type=t, pathSet=sorted(PATHS.get(t._wsdlName, ("name",)))) for t in types]
        spec = PC.FilterSpec(objectSet=[PC.ObjectSpec(obj=r, skip=False) for r in refs], propSet=prop_set)
        result = self.content.propertyCollector.RetrievePropertiesEx([spec], PC.RetrieveOptions())
        found: dict[str, RawEntity] = {}
        while result is not None:
            found.update(self._entities(result.objects))
            if not result.token:
                break
            result = self.content.propertyCollector.ContinueRetrievePropertiesEx(result.token)
        return found

    def _view_spec(self, kind: KindSpec) -> Any:
        view = self._views.get(kind.name)
        if view is None:
            view = self.content.viewManager.CreateContainerView(self.content.rootFolder, [kind.view_type], True)
            self._views[kind.name] = view
        traverse = PC.TraversalSpec(name="view", path="view", skip=False, type=vim.view.ContainerView)
        return PC.FilterSpec(
            objectSet=[PC.ObjectSpec(obj=view, skip=True, selectSet=[traverse])],
            propSet=[PC.PropertySpec(type=t, pathSet=list(paths)) for t, paths in kind.props],
        )

    def _entities(self, contents: Iterable[Any]) -> Iterator[tuple[str, RawEntity]]:
        for content in contents or []:
            for missing in content.missingSet or []:
                # vcsim answers reads without a session with per-property NotAuthenticated faults.
                if isinstance(missing.fault, vim.fault.NotAuthenticated):
                    raise SessionLost(f"session on {self.record.host} is no longer valid")
            obj = content.obj
            self._refs[obj._moId] = obj
            yield obj._moId, RawEntity(obj._moId, obj._wsdlName, {p.name: p.val for p in content.propSet or []})

    # -- watching --------------------------------------------------------------------------------

    def watch(self) -> None:
        """Create our own PropertyCollector with one filter over one view of every kind (each filter
        re-walks its view on every change, so one is cheaper than one per kind); `wait` returns updates."""
        with self._calls():
            collector = self.content.propertyCollector.CreatePropertyCollector()
            view = self.content.viewManager.CreateContainerView(
                self.content.rootFolder, [k.view_type for k in KINDS], True)
            self._views["watch"] = view
            traverse = PC.TraversalSpec(name="view", path="view", skip=False, type=vim.view.ContainerView)
            prop_set = [PC.PropertySpec(type=t, pathSet=list(VM_WATCH_PATHS if t is vim.VirtualMachine else paths))
                        for k in KINDS for t, paths in k.props]
            # The view itself too (skip=False): its member list catches enters and leaves (raw.VIEW_TYPE).
            prop_set.append(PC.PropertySpec(type=vim.view.ContainerView, pathSet=["view"]))
            collector.CreateFilter(PC.FilterSpec(objectSet=[PC.ObjectSpec(obj=view, skip=False, selectSet=[traverse])],
                                                 propSet=prop_set), partialUpdates=False)
        self._collector, self._version = collector, ""

    def wait(self, max_wait_seconds: int) -> tuple[list[ObjectUpdate], bool]:
        """Updates since the last call (the first call returns the full state as "enter" updates),
        and whether more are pending (truncated). Empty after `max_wait_seconds` without changes."""
        options = vmodl.query.PropertyCollector.WaitOptions(maxWaitSeconds=max_wait_seconds, maxObjectUpdates=1000)
        with self._calls():
            try:
                result = self._collector.WaitForUpdatesEx(self._version, options)
            except vmodl.fault.RequestCanceled:
                return [], False
        if result is None:
            return [], False
        self._version = result.version
        updates = []
        for filter_update in result.filterSet or []:
            for obj in filter_update.objectSet or []:
                self._refs[obj.obj._moId] = obj.obj
                if isinstance(obj.obj, vim.view.ContainerView):  # members may need a targeted re-read
                    self._refs.update((m._moId, m) for c in obj.changeSet or [] for m in (c.val or []))
                changes = tuple(PropertyChange(c.name, str(c.op), c.val) for c in obj.changeSet or [])
                updates.append(ObjectUpdate(str(obj.kind), obj.obj._moId, obj.obj._wsdlName, changes))
        return updates, bool(result.truncated)

    def alive(self) -> bool:
        """Whether the server still knows this session (one cheap call)."""
        try:
            return self.content.sessionManager.currentSession is not None
        except Exception:  # noqa: BLE001 — any failure means: open a new one
            return False

    def cancel(self) -> None:
        """Make a blocked `wait` return now (called from another thread on shutdown)."""
        try:
            if self._collector is not None:
                self._collector.CancelWaitForUpdates()
        except Exception:  # noqa: BLE001 — best effort; the wait ends by its timeout anyway
            pass

    def close(self) -> None:
        """Log out (best effort: the session may already be gone). Logging out also frees the
        session's views and collector on the server; destroying them first is only tidiness."""
        for obj in [self._collector, *self._views.values()]:
            if obj is not None:
                with contextlib.suppress(Exception):
                    obj.Destroy()
        with contextlib.suppress(Exception):
            self.content.sessionManager.Logout()
        self._views.clear()
        self._collector = None

    @contextmanager
    def _calls(self) -> Iterator[None]:
        """Map what pyvmomi raises to SessionLost or a classified ProviderFault."""
        try:
            yield
        except (SessionLost, vmodl.fault.RequestCanceled):
            raise
        except vmodl.fault.ManagedObjectNotFound as exc:
            if _is_view(exc.obj):  # our views and collector live in the session: it is gone
                raise SessionLost(f"session objects on {self.record.host} are gone (server restarted?)") from None
            raise
        except vim.fault.NotAuthenticated:
            raise SessionLost(f"session on {self.record.host} ended") from None
        except Exception as exc:  # noqa: BLE001
            raise classify(exc, self.record) from None

def _is_view(obj: Any) -> bool:
    return isinstance(obj, (vim.view.ContainerView, PC, PC.Filter))


def _probe(record: ProviderRecord, trust: tls.Trust, timeout: float) -> None:
    """Connect with a timeout, check a pinned certificate, and check that /sdk answers like vSphere.

    pyVim's version discovery opens its connection without a timeout; probing first with one means
    a silent host is reported as unreachable instead of hanging the collector.
    """
    host, port = tls.host_port(record.url)
    path = (urlparse(record.url).path or "/sdk").rstrip("/")
    conn = http.client.HTTPSConnection(host, port, context=trust.discovery, timeout=timeout)
    try:
        conn.connect()
        tls.verify_pin(record, conn.sock.getpeercert(binary_form=True) or b"")
        conn.request("GET", f"{path}/vimServiceVersions.xml")
        status = conn.getresponse().status
    finally:
        conn.close()
    if status != 200:
        raise Unreachable(f"{record.host} answered HTTP {status} for {path}/vimServiceVersions.xml: "
                          "not a vSphere API endpoint (is the URL https://HOST/sdk?)")
