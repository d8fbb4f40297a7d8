"""What the inventory service writes to Kafka.

- `mtv.inventory.events.v1`: one InventoryChanged per change, keyed "<provider id>/<object id>", and
  InventorySynced after each full discovery;
- `mtv.inventory.state.v1` (compacted): the same InventoryChanged for ADDED/UPDATED (so the latest
  value of each key is the object), a tombstone for REMOVED — replaying it rebuilds the inventory;
- `mtv.provider.events.v1`: ProviderStatusChanged, keyed by provider id.
"""

from __future__ import annotations

from collections.abc import Sequence

from mtv import events, topics
from mtv.bus import Publisher
from mtv.inventory.objects import to_proto
from mtv.inventory.state import Change, ChangeKind
from mtv.provider_store import ProviderRecord
from mtv.v1 import inventory_pb2

SOURCE = "inventory"
_CHANGE_PB = {ChangeKind.ADDED: inventory_pb2.CHANGE_KIND_ADDED, ChangeKind.UPDATED: inventory_pb2.CHANGE_KIND_UPDATED,
              ChangeKind.REMOVED: inventory_pb2.CHANGE_KIND_REMOVED}


def provider_to_proto(record: ProviderRecord) -> inventory_pb2.Provider:
    """The provider as it travels: a reference to its secret, never the password."""
    return inventory_pb2.Provider(
        id=record.id, name=record.name, type=inventory_pb2.PROVIDER_TYPE_VSPHERE, url=record.url,
        username=record.username, secret_ref=record.secret_ref, thumbprint=record.thumbprint,
        insecure_skip_verify=record.insecure_skip_verify,
    )


def change_to_proto(provider_id: str, change: Change) -> inventory_pb2.InventoryChanged:
    message = inventory_pb2.InventoryChanged(provider_id=provider_id, change=_CHANGE_PB[change.kind],
                                             object_id=change.object_id, changed_fields=list(change.fields))
    if change.item is not None:
        message.object.CopyFrom(to_proto(change.item))
    return message


class EventSink:
    """Publishes inventory changes, sync markers and provider status (thread-safe: Publisher is)."""

    def __init__(self, publisher: Publisher) -> None:
        self._publisher = publisher

    def changes(self, provider_id: str, changes: Sequence[Change]) -> None:
        for change in changes:
            key = topics.object_key(provider_id, change.object_id)
            event = events.make(change_to_proto(provider_id, change), source=SOURCE, correlation_id=provider_id)
            self._publisher.publish(event, topics.INVENTORY_EVENTS, key)
            if change.kind is ChangeKind.REMOVED:
                self._publisher.publish_raw(topics.INVENTORY_STATE.name, key.encode(), None)
            else:
                self._publisher.publish(event, topics.INVENTORY_STATE, key)

    def synced(self, provider_id: str, object_count: int, duration_seconds: float) -> None:
        payload = inventory_pb2.InventorySynced(provider_id=provider_id, object_count=object_count,
                                                duration_seconds=duration_seconds)
        self._publisher.publish(events.make(payload, source=SOURCE, correlation_id=provider_id))

    def status(self, record: ProviderRecord, phase: int, reason: str) -> None:
        payload = inventory_pb2.ProviderStatusChanged(provider=provider_to_proto(record), phase=phase, reason=reason,
                                                      insecure=record.insecure_skip_verify)
        self._publisher.publish(events.make(payload, source=SOURCE, correlation_id=record.id))

    def flush(self) -> None:
        self._publisher.flush()
