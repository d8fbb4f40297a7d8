"""Idempotent topic creation from the registry (faust only creates its own internal topics)."""

from __future__ import annotations

from collections.abc import Iterable

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from mtv import topics as registry


def ensure_topics(
    bootstrap: str,
    wanted: Iterable[registry.Topic] = registry.ALL,
    replication: int = 1,
    timeout: float = 30.0,
    quiet: bool = False,
) -> list[str]:
    """Create missing topics; return the names created. Existing topics are left as they are.

    `quiet` silences librdkafka's per-retry connection errors (a CLI reports one line instead).
    """
    config: dict[str, object] = {"bootstrap.servers": bootstrap}
    if quiet:
        config["log_level"] = 2
    admin = AdminClient(config)
    wanted = list(wanted)
    existing = set(admin.list_topics(timeout=timeout).topics)
    new = [
        NewTopic(t.name, num_partitions=t.partitions, replication_factor=replication, config=t.config())
        for t in wanted
        if t.name not in existing
    ]
    if not new:
        return []
    created = []
    for name, future in admin.create_topics(new, request_timeout=timeout).items():
        try:
            future.result(timeout)
            created.append(name)
        except KafkaException as exc:
            # Another process may have created it between our list and create: that is success.
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
    return created
