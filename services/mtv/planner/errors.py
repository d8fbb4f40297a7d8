"""The planner's exceptions, layered by cause:

    PlannerError
    ├── PlanSpecError        a plan (YAML or gRPC) is not acceptable; lists every problem with field and line
    ├── PlanConflict         the request clashes with the plan's state (e.g. changing an executing plan)
    ├── PlanNotFound         no plan has this name or id
    └── Rejected             an event that cannot apply (unknown plan, VM or disk); dead-lettered with the reason

Messages say what is wrong and what to do; they never carry secrets.
"""

from __future__ import annotations

from dataclasses import dataclass


class PlannerError(Exception):
    """Base of every planner error."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a plan: the field path (e.g. `map.network[1].destination.type`), its line."""

    field: str
    message: str
    line: int = 0  # 1-based; 0 when the plan did not come from a file

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line else ""
        return f"{where}{self.field}: {self.message}"


class PlanSpecError(PlannerError, ValueError):
    def __init__(self, problems: list[Problem], source: str = "") -> None:
        self.problems = problems
        self.source = source
        prefix = f"{source}: " if source else ""
        super().__init__("; ".join(prefix + str(p) for p in problems))


class PlanConflict(PlannerError):
    pass


class PlanNotFound(PlannerError, LookupError):
    def __init__(self, name: str) -> None:
        super().__init__(f"plan {name!r} not found; `mtvctl plan ls` lists the plans")
        self.name = name


class Rejected(PlannerError):
    """The event does not belong to anything the planner knows; it goes to the DLQ with this reason."""
