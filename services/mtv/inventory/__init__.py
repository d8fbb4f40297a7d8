"""Inventory service: providers, vSphere discovery, live updates, VM concerns, queries."""
