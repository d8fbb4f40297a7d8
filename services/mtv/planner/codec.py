"""Planner state <-> JSON for the table changelogs (planner/tables.py).

Tables keep the dataclasses themselves in memory; only changelog records are serialized, and a
restart turns them back into the same dataclasses. Each value is tagged with its class name; source
VMs and plan specs travel as their protobuf bytes (base64), which already round-trip exactly.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import json
import types
import typing
from enum import Enum
from typing import Any

from mtv.model import PlanSpec, Vm, plan_from_proto, plan_to_proto, vm_from_proto, vm_to_proto
from mtv.planner import records, validation
from mtv.v1 import inventory_pb2, plan_pb2

_CLASSES: dict[str, type] = {c.__name__: c for c in (
    records.PlanRecord, records.SpecRecord, records.VmRecord, validation.Validation)}


def _encode(value: Any) -> Any:
    if isinstance(value, Vm):
        return base64.b64encode(vm_to_proto(value).SerializeToString()).decode()
    if isinstance(value, PlanSpec):
        return base64.b64encode(plan_to_proto(value).SerializeToString()).decode()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, tuple | list):
        return [_encode(v) for v in value]
    return value


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _decode(tp: Any, value: Any) -> Any:
    if value is None:
        return None
    if tp is Vm:
        return vm_from_proto(inventory_pb2.Vm.FromString(base64.b64decode(value)))
    if tp is PlanSpec:
        return plan_from_proto(plan_pb2.PlanSpec.FromString(base64.b64decode(value)))
    origin = typing.get_origin(tp)
    if origin in (types.UnionType, typing.Union):
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        return _decode(inner[0], value)
    if origin is tuple:
        inner = typing.get_args(tp)[0]
        return tuple(_decode(inner, v) for v in value)
    if isinstance(tp, type) and issubclass(tp, Enum):
        return tp(value)
    if dataclasses.is_dataclass(tp):
        hints = _hints(tp)  # type: ignore[arg-type]
        return tp(**{k: _decode(hints[k], v) for k, v in value.items() if k in hints})
    return value


def dumps(obj: Any) -> bytes:
    name = type(obj).__name__
    if isinstance(obj, str | int | float | bool):  # the name and provider indexes hold plain strings
        return json.dumps({"_t": "json", "v": obj}).encode()
    if name not in _CLASSES:
        raise TypeError(f"the planner's tables cannot store {name}")
    return json.dumps({"_t": name, "v": _encode(obj)}, separators=(",", ":")).encode()


def loads(data: bytes) -> Any:
    doc = json.loads(data)
    if doc["_t"] == "json":
        return doc["v"]
    return _decode(_CLASSES[doc["_t"]], doc["v"])
