"""Kafka plumbing shared by every service: codec, publisher, committing consumer, DLQ, topic admin.

Policy objects (commit, retry) are frozen dataclasses passed in explicitly; nothing here knows
about migrations.
"""

from mtv.bus.codec import CodecError, decode, encode
from mtv.bus.consumer import COMMIT_AFTER_EACH, COMMIT_BATCHED, CommitPolicy, EventConsumer, Reject, RetryPolicy
from mtv.bus.publisher import DeliveryError, Publisher

__all__ = [
    "COMMIT_AFTER_EACH",
    "COMMIT_BATCHED",
    "CodecError",
    "CommitPolicy",
    "DeliveryError",
    "EventConsumer",
    "Publisher",
    "Reject",
    "RetryPolicy",
    "decode",
    "encode",
]
