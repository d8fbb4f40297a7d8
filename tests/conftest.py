"""Shared fixtures. Servers are real (see tests/fixtures/); a server that cannot start fails the test."""

from fixtures.kafka import kafka_bootstrap  # noqa: F401
