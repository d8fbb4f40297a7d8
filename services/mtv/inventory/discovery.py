"""One collector thread per provider: connect, discover everything, then follow live updates.

    ┌─► open session ──fault──► report status, back off (wake early when the secret changes) ─┐
    │        │ ok: Ready                                                                        │
    │   full discovery (RetrievePropertiesEx per kind) → diff against last known → publish      │
    │        │                                                                                  │
    │   watch: WaitForUpdatesEx loop → patch raw cache → re-translate → diff → publish          │
    │        │ session lost / connection dropped                                                │
    └────────┴──────────────────────────────────────────────────────────────────────────────────┘

Every pass through discovery diffs against the last published state, so reconnecting, resyncing or
restarting never duplicates or loses objects, and only real changes are published.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

from mtv.bus import DeliveryError
from mtv.inventory import concerns
from mtv.inventory.errors import PHASE_NAMES, SECRETS, AuthFailed, SessionLost, redact
from mtv.inventory.errors import ProviderFault as Fault
from mtv.inventory.objects import Item
from mtv.inventory.publish import EventSink
from mtv.inventory.raw import ObjectUpdate, RawEntity, apply_updates
from mtv.inventory.state import Change, ProviderState, Status
from mtv.inventory.translate import translate_all
from mtv.inventory.vsphere_source import PATHS, VsphereSession
from mtv.model import Vm
from mtv.provider_store import ProviderRecord, ProviderStore
from mtv.v1 import inventory_pb2 as pb

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Backoff:
    """Delay before the n-th retry: initial * factor**(n-1), at most `maximum`."""

    initial: float = 1.0
    maximum: float = 30.0
    factor: float = 2.0
    # A rejected password is retried only when the secret changes, or after this long: retrying it
    # quickly could lock the vCenter account.
    auth_retry: float = 600.0

    def delay(self, attempt: int) -> float:
        return min(self.maximum, self.initial * self.factor ** max(attempt - 1, 0))


@dataclass(frozen=True)
class CollectorOptions:
    backoff: Backoff = Backoff()
    wait_seconds: int = 5  # WaitForUpdatesEx maxWaitSeconds; also bounds how long a stop takes
    timeout: float = 30.0  # connect and read timeout on top of the wait
    page_size: int = 500


DEFAULT_OPTIONS = CollectorOptions()


def with_concerns(item: Item | None) -> Item | None:
    return dataclasses.replace(item, concerns=concerns.evaluate(item)) if isinstance(item, Vm) else item


class Collector:
    """Keeps `state` equal to the provider's inventory and publishes every change through `sink`."""

    def __init__(self, record: ProviderRecord, store: ProviderStore, state: ProviderState, sink: EventSink,
                 options: CollectorOptions = DEFAULT_OPTIONS) -> None:
        self.record = record
        self.store = store
        self.state = state
        self.sink = sink
        self.options = options
        self._raw: dict[str, RawEntity] = {}
        self._stop = threading.Event()
        self._session: VsphereSession | None = None
        self._published_status: Status | None = None
        self._thread = threading.Thread(target=self._run, name=f"collector-{record.name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        session = self._session
        if session is not None:
            session.cancel()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    # -- the loop --------------------------------------------------------------------------------

    def _run(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            secret = self._secret_version()
            try:
                session = VsphereSession.open(self.record, self._password(), timeout=self.options.timeout)
            except Fault as fault:
                attempt += 1
                self._report(fault.phase, fault.reason)
                auth = fault.phase == pb.PROVIDER_PHASE_AUTH_FAILED
                self._pause(self.options.backoff.auth_retry if auth else self.options.backoff.delay(attempt), secret)
                continue
            except Exception as exc:  # noqa: BLE001 — e.g. the session ended during the privilege check
                attempt += 1
                log.warning("provider %s: connecting failed (%s); retrying", self.record.name, type(exc).__name__,
                            extra={"provider": self.record.name})
                self._pause(self.options.backoff.delay(attempt), secret)
                continue
            attempt = 0
            self._run_session(session)

    def _run_session(self, session: VsphereSession) -> None:
        self._session = session
        try:
            self._report(pb.PROVIDER_PHASE_READY, self._ready_reason(session))
            self._sync(session)
            self._watch(session)
        except SessionLost as lost:
            log.info("provider %s: %s; logging in again", self.record.name, lost, extra={"provider": self.record.name})
            self._pause(self.options.backoff.initial, self._secret_version())  # never a tight login loop
        except Fault as fault:
            self._report(fault.phase, fault.reason)
            self._pause(self.options.backoff.delay(1), self._secret_version())
        except Exception:  # noqa: BLE001 — a bug in one provider's data must not end its collector
            log.exception("provider %s: collector failed; retrying", self.record.name,
                          extra={"provider": self.record.name})
            self._pause(self.options.backoff.maximum, self._secret_version())
        finally:
            self._session = None
            session.close()

    def _sync(self, session: VsphereSession) -> None:
        started = time.monotonic()
        self._raw = session.retrieve_all(self.options.page_size)
        changes = self._commit(self._items(None), complete=True)
        duration = time.monotonic() - started
        self.sink.synced(self.record.id, len(self.state), duration)
        self.sink.flush()
        self.state.synced.set()
        counts = {k.value: sum(1 for c in changes if c.kind is k) for k in {c.kind for c in changes}}
        log.info("provider %s: discovered %d objects in %.2fs; changes %s", self.record.name, len(self.state),
                 duration, counts or "none", extra={"provider": self.record.name})

    def _watch(self, session: VsphereSession) -> None:
        session.watch()
        while not self._stop.is_set():
            updates, _truncated = session.wait(self.options.wait_seconds)
            if updates:
                self._apply(session, updates)

    def _apply(self, session: VsphereSession, updates: list[ObjectUpdate]) -> None:
        applied = apply_updates(self._raw, updates, PATHS)
        if applied.refetch:
            fresh = session.retrieve(applied.refetch)
            self._raw.update(fresh)
            for gone in applied.refetch - fresh.keys():  # deleted before we could read it
                if self._raw.pop(gone, None) is not None:
                    applied.removed.add(gone)
        ids = (applied.changed | applied.refetch) - applied.removed
        if applied.structural:  # names/parents VMs refer to may have changed
            ids |= {i for i, e in self._raw.items() if e.type == "VirtualMachine"}
        items = self._items(i for i in ids if i in self._raw)
        items.update(dict.fromkeys(applied.removed))
        self._commit(items, complete=False)

    def _items(self, ids: Iterable[str] | None) -> dict[str, Item | None]:
        return {i: with_concerns(item) for i, item in translate_all(self._raw, ids).items()}

    def _commit(self, items: dict[str, Item | None], complete: bool) -> list[Change]:
        """Publish what changed, then record it as the last known state. A publish that fails raises
        (DeliveryError) before the state moves on, so the next pass publishes those changes again."""
        changes = self.state.changes_for(items, complete=complete)
        if changes:
            self.sink.changes(self.record.id, changes)
            self.sink.flush()
            log.debug("provider %s: published %d change(s)", self.record.name, len(changes))
        self.state.apply(changes)
        return changes

    # -- status and retries ----------------------------------------------------------------------

    def _report(self, phase: int, reason: str) -> None:
        """Publish a status change (only when phase or reason differ from the last one published)."""
        status = Status(phase, redact(reason, [self._password(quiet=True)]))
        if status != self.state.status:
            self.state.status = status
            level = logging.INFO if phase == pb.PROVIDER_PHASE_READY else logging.WARNING
            log.log(level, "provider %s: %s: %s", self.record.name, PHASE_NAMES[phase], status.reason,
                    extra={"provider": self.record.name})
        if status == self._published_status:
            return
        try:
            self.sink.status(self.record, phase, status.reason)
            self.sink.flush()
            self._published_status = status
        except DeliveryError as exc:  # the broker is away: keep collecting, publish with the next report
            log.warning("provider %s: status not published: %s", self.record.name, exc,
                        extra={"provider": self.record.name})

    def _ready_reason(self, session: VsphereSession) -> str:
        about = getattr(session.content, "about", None)
        product = getattr(about, "fullName", "") or "vSphere"
        reason = f"connected to {product} at {self.record.host} as {self.record.username}"
        if self.record.insecure_skip_verify:
            reason += "; WARNING: TLS certificate verification is disabled for this provider"
        return reason

    def _password(self, quiet: bool = False) -> str:
        try:
            password = self.store.password(self.record)
            SECRETS.add(password)
            return password
        except OSError as exc:
            if quiet:
                return ""
            raise AuthFailed(f"cannot read secret {self.record.secret_ref!r}: {exc.strerror}") from None

    def _secret_version(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.store.root / self.record.secret_ref)
        except OSError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def _pause(self, seconds: float, secret: tuple[int, int, int] | None) -> None:
        """Sleep until `seconds` pass, the collector stops, or the secret file is rewritten."""
        deadline = time.monotonic() + seconds
        while not self._stop.wait(min(0.25, max(deadline - time.monotonic(), 0))):
            if time.monotonic() >= deadline or self._secret_version() != secret:
                return
