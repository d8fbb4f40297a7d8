"""Planner: plans, validation, signed approvals, and the per-VM migration saga (changelog-backed)."""
