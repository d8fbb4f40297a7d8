"""Filtering and paging of inventory listings. Pure functions on the domain objects.

Pages use keyset tokens: a token names the last (name, id) returned, and the next page starts after
it. Unlike offsets, an object added or removed between two requests does not shift the pages, so
a client walking every page sees each surviving object exactly once.
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from mtv.model import ConcernCategory, PowerState, Vm

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


class Named(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def name(self) -> str: ...


T = TypeVar("T", bound=Named)


class QueryError(ValueError):
    """A request that cannot be answered as asked; the message names the field."""


@dataclass(frozen=True)
class VmFilter:
    name_glob: str = ""
    power_state: PowerState | None = None
    folder: str = ""  # inventory path prefix ("/DC0/vm/prod") or folder id ("group-v12")
    concern_category: ConcernCategory | None = None


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    next_token: str  # "" on the last page
    total: int  # matching objects over all pages


def name_matches(name: str, glob: str) -> bool:
    """Shell-style glob, case-sensitive like vSphere names; an empty glob matches everything."""
    return not glob or fnmatch.fnmatchcase(name, glob)


def in_folder(vm: Vm, folder: str) -> bool:
    if not folder:
        return True
    if vm.folder_id == folder:
        return True
    prefix = folder.rstrip("/") + "/"
    return vm.path.startswith(prefix)


def vm_matches(vm: Vm, f: VmFilter) -> bool:
    return (
        name_matches(vm.name, f.name_glob)
        and (f.power_state is None or vm.power_state is f.power_state)
        and in_folder(vm, f.folder)
        and (f.concern_category is None or any(c.category is f.concern_category for c in vm.concerns))
    )


def select(items: Iterable[T], predicate: Callable[[T], bool]) -> list[T]:
    """Matching items in listing order: by name, then id (names are not unique in vSphere)."""
    return sorted((i for i in items if predicate(i)), key=lambda i: (i.name, i.id))


def encode_token(item: Named) -> str:
    return base64.urlsafe_b64encode(json.dumps([item.name, item.id]).encode()).decode().rstrip("=")


def decode_token(token: str) -> tuple[str, str]:
    try:
        name, id_ = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        return str(name), str(id_)
    except (binascii.Error, ValueError, TypeError):
        raise QueryError("page_token: not a token from a previous response of this listing") from None


def paginate(ordered: Sequence[T], page_size: int = 0, token: str = "") -> Page[T]:
    """One page of `ordered` (sorted by (name, id), as `select` returns) after `token`."""
    if page_size < 0:
        raise QueryError("page_size: must not be negative")
    size = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
    start = 0
    if token:
        after = decode_token(token)
        start = next((n for n, i in enumerate(ordered) if (i.name, i.id) > after), len(ordered))
    items = list(ordered[start:start + size])
    more = start + size < len(ordered)
    return Page(items=items, next_token=encode_token(items[-1]) if more and items else "", total=len(ordered))


def find_vm(vms: Iterable[Vm], id_or_name: str) -> Vm:
    """The VM with this moref id, else the one VM with this name; QueryError/LookupError otherwise."""
    candidates = list(vms)
    by_id = [v for v in candidates if v.id == id_or_name]
    if by_id:
        return by_id[0]
    by_name = [v for v in candidates if v.name == id_or_name]
    if len(by_name) > 1:
        ids = ", ".join(sorted(v.id for v in by_name))
        raise QueryError(f"{len(by_name)} VMs are named {id_or_name!r} ({ids}); ask for one by id")
    if not by_name:
        raise LookupError(f"no VM with id or name {id_or_name!r}")
    return by_name[0]
