"""Shared fixtures. Servers are real (see tests/fixtures/); a server that cannot start fails the test."""

pytest_plugins = ["fixtures.kafka", "fixtures.vsphere", "fixtures.k8s"]
