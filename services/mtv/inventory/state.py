"""The last known inventory of each provider, and the diff that turns a new view into changes.

Everything published goes through `ProviderState`: a full discovery replaces the whole view
(objects that vanished become REMOVED), a live update upserts or removes single objects. Only real
differences come out, so a resync after a lost session or a restart publishes nothing for objects
that did not change. The gRPC queries read consistent snapshots under the same lock.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum

from mtv.inventory.objects import Item, changed_fields
from mtv.v1 import inventory_pb2


class ChangeKind(Enum):
    ADDED = "added"
    UPDATED = "updated"
    REMOVED = "removed"


@dataclass(frozen=True)
class Change:
    kind: ChangeKind
    object_id: str
    item: Item | None  # None for REMOVED
    fields: tuple[str, ...] = ()  # for UPDATED: the fields that differ


def diff(old: Mapping[str, Item], new: Mapping[str, Item | None], *, complete: bool) -> list[Change]:
    """Changes from `old` to `new`. A None value in `new` removes the object. With `complete`, `new`
    is the whole inventory and objects missing from it are removed too."""
    changes: list[Change] = []
    for object_id, item in new.items():
        before = old.get(object_id)
        if item is None:
            if before is not None:
                changes.append(Change(ChangeKind.REMOVED, object_id, None))
        elif before is None:
            changes.append(Change(ChangeKind.ADDED, object_id, item))
        elif before != item:
            changes.append(Change(ChangeKind.UPDATED, object_id, item, changed_fields(before, item)))
    if complete:
        changes.extend(Change(ChangeKind.REMOVED, i, None) for i in old if i not in new)
    return changes


@dataclass(frozen=True)
class Status:
    phase: int = inventory_pb2.PROVIDER_PHASE_CONNECTING  # inventory_pb2.ProviderPhase value
    reason: str = "connecting"


class ProviderState:
    """Objects of one provider by moref id, its connection status, and whether a discovery finished."""

    def __init__(self, provider_id: str, objects: Mapping[str, Item] | None = None) -> None:
        self.provider_id = provider_id
        self._objects: dict[str, Item] = dict(objects or {})
        self._lock = threading.Lock()
        self.status = Status()
        self.synced = threading.Event()

    def changes_for(self, objects: Mapping[str, Item | None], *, complete: bool) -> list[Change]:
        """What `objects` would change (see `diff`), without applying it: the collector publishes the
        changes first and applies them after the broker took them, so a failed publish is retried."""
        with self._lock:
            return diff(self._objects, objects, complete=complete)

    def apply(self, changes: Iterable[Change]) -> None:
        with self._lock:
            for change in changes:
                if change.item is None:
                    self._objects.pop(change.object_id, None)
                else:
                    self._objects[change.object_id] = change.item

    def replace_all(self, objects: Mapping[str, Item | None]) -> list[Change]:
        """A full discovery: apply `objects` as the complete inventory."""
        changes = self.changes_for(objects, complete=True)
        self.apply(changes)
        return changes

    def update(self, objects: Mapping[str, Item | None]) -> list[Change]:
        """Live updates: upsert the given objects, remove those mapped to None."""
        changes = self.changes_for(objects, complete=False)
        self.apply(changes)
        return changes

    def items(self, cls: type | None = None) -> list[Item]:
        """A snapshot of the objects (of one class), safe to use while updates continue."""
        with self._lock:
            values = list(self._objects.values())
        return values if cls is None else [v for v in values if isinstance(v, cls)]

    def get(self, object_id: str) -> Item | None:
        with self._lock:
            return self._objects.get(object_id)

    def __len__(self) -> int:
        with self._lock:
            return len(self._objects)
