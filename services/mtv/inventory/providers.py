"""Registered providers, each with its collector and state. The gRPC layer talks only to this."""

from __future__ import annotations

import logging
import os
import ssl
import threading
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from mtv.inventory.discovery import DEFAULT_OPTIONS, Collector, CollectorOptions
from mtv.inventory.errors import SECRETS
from mtv.inventory.objects import Item
from mtv.inventory.publish import EventSink
from mtv.inventory.state import ProviderState
from mtv.inventory.vsphere_source import VsphereSession
from mtv.provider_store import ProviderError, ProviderExists, ProviderRecord, ProviderStore, validate

log = logging.getLogger(__name__)


def _write_private(path: Path, data: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(data)


class ProviderManager:
    """Starts a collector per stored provider; adds new ones; answers lookups by name or id."""

    def __init__(self, store: ProviderStore, sink: EventSink, options: CollectorOptions = DEFAULT_OPTIONS,
                 restored: Mapping[str, Mapping[str, Item]] | None = None) -> None:
        self.store = store
        self.sink = sink
        self.options = options
        self._restored = dict(restored or {})
        self._lock = threading.Lock()
        self._records: dict[str, ProviderRecord] = {}  # by name
        self._states: dict[str, ProviderState] = {}  # by provider id
        self._collectors: dict[str, Collector] = {}  # by name
        self._commands: dict[str, VsphereSession] = {}  # by provider id: sessions for power operations
        self._commands_lock = threading.Lock()

    def start(self) -> None:
        for record in self.store.list():
            self._start(record)

    def _start(self, record: ProviderRecord) -> None:
        with self._lock:
            if record.name in self._collectors:
                return
            state = ProviderState(record.id, self._restored.pop(record.id, None))
            collector = Collector(record, self.store, state, self.sink, self.options)
            self._records[record.name] = record
            self._states[record.id] = state
            self._collectors[record.name] = collector
        collector.start()
        log.info("provider %s (%s): collector started for %s", record.name, record.id, record.url,
                 extra={"provider": record.name})

    def add(self, record: ProviderRecord, password: str, ca_pem: str = "") -> ProviderRecord:
        """Store a new provider (password and CA bundle as private files) and start its collector."""
        if record.type != "vsphere":
            raise ProviderError(f"type {record.type!r}: only vsphere providers are supported")
        ca_path = self.store.root / f"{record.name}.ca.pem"
        if ca_pem:
            record = replace(record, ca_file=str(ca_path))
        validate(replace(record, id=record.id or "new"))  # names the bad field before any file is written
        if ca_pem:
            try:
                ssl.create_default_context(cadata=ca_pem)
            except (ssl.SSLError, ValueError) as exc:
                raise ProviderError(f"ca_pem: not a PEM certificate bundle ({exc})") from None
        with self._lock:
            if record.name in self._records or (self.store.root / f"{record.name}.json").exists():
                raise ProviderExists(f"provider {record.name!r} already exists; remove it first or pick another name")
            if ca_pem:
                _write_private(ca_path, ca_pem)
            try:
                record = self.store.add(record, password)
            except BaseException:
                if ca_pem:
                    ca_path.unlink(missing_ok=True)
                raise
        self._start(record)
        return record

    def records(self) -> list[ProviderRecord]:
        with self._lock:
            return sorted(self._records.values(), key=lambda r: r.name)

    def find(self, name_or_id: str) -> tuple[ProviderRecord, ProviderState]:
        """The provider by name or id; ProviderNotFound (from the store) otherwise."""
        with self._lock:
            record = self._records.get(name_or_id) or next(
                (r for r in self._records.values() if r.id == name_or_id), None)
            if record is not None:
                return record, self._states[record.id]
        # Not running here: stored by another instance sharing the directory? Start it (or raise
        # ProviderNotFound with the store's message).
        record = self.store.get(name_or_id)
        self._start(record)
        return record, self._states[record.id]

    def service_instance(self, provider_id: str) -> Any:
        """A logged-in pyvmomi ServiceInstance for commands (source power requests, `power.py`): its own
        session, so a slow task never waits behind the collector's WaitForUpdatesEx. Re-opened when the
        server forgot it. Raises ProviderFault (with the status reason) when the provider is unusable."""
        record, _ = self.find(provider_id)
        with self._commands_lock:
            session = self._commands.get(record.id)
            if session is None or not session.alive():
                if session is not None:
                    session.close()
                password = self.store.password(record)
                SECRETS.add(password)
                session = VsphereSession.open(record, password, timeout=self.options.timeout)
                self._commands[record.id] = session
            return session.service_instance

    def stop(self, timeout: float = 15.0) -> None:
        with self._lock:
            collectors = list(self._collectors.values())
        for collector in collectors:
            collector.stop()
        for collector in collectors:
            collector.join(timeout)
        with self._commands_lock:
            for session in self._commands.values():
                session.close()
            self._commands.clear()
