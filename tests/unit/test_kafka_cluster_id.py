"""The local broker's cluster id: a value the storage tool accepts as `-t <id>`."""

from __future__ import annotations

import base64
import uuid

import pytest

from mtv.devstack import kafka_broker


def test_cluster_ids_never_start_with_a_dash_and_are_16_byte_uuids(monkeypatch: pytest.MonkeyPatch) -> None:
    # One in 64 random ids starts with "-": force two of them first, as in CI where one failed a run.
    dashed = [uuid.UUID(bytes=base64.urlsafe_b64decode("-" + "A" * 21 + "==")) for _ in range(2)]
    fresh = iter([*dashed, uuid.UUID(int=42)])
    monkeypatch.setattr(kafka_broker.uuid, "uuid4", lambda: next(fresh))
    cid = kafka_broker.new_cluster_id()
    assert cid == base64.urlsafe_b64encode(uuid.UUID(int=42).bytes).decode().rstrip("=")
    monkeypatch.undo()
    ids = [kafka_broker.new_cluster_id() for _ in range(2000)]
    assert not [i for i in ids if i.startswith("-")]
    assert all(len(base64.urlsafe_b64decode(i + "==")) == 16 for i in ids)
