"""Listing filters and keyset paging: pure functions, no server."""

from __future__ import annotations

from dataclasses import replace

import pytest

from mtv.inventory.query import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    QueryError,
    VmFilter,
    find_vm,
    paginate,
    select,
    vm_matches,
)
from mtv.model import Concern, ConcernCategory, PowerState, Vm

WARN = Concern("vm.cbt.disabled", ConcernCategory.WARNING, "CBT", "off")
CRIT = Concern("vm.device.passthrough", ConcernCategory.CRITICAL, "PT", "pt")
VMS = [
    Vm(id="vm-1", name="web-01", path="/DC0/vm/prod/web-01", folder_id="group-p", power_state=PowerState.ON,
       concerns=(WARN,)),
    Vm(id="vm-2", name="web-02", path="/DC0/vm/prod/web-02", folder_id="group-p", power_state=PowerState.OFF),
    Vm(id="vm-3", name="db-01", path="/DC0/vm/production/db-01", folder_id="group-q", power_state=PowerState.ON,
       concerns=(WARN, CRIT)),
    Vm(id="vm-4", name="web-01", path="/DC1/vm/web-01", folder_id="group-r", power_state=PowerState.SUSPENDED),
]


def _names(flt: VmFilter) -> list[str]:
    return [v.id for v in select(VMS, lambda v: vm_matches(v, flt))]


@pytest.mark.parametrize(
    ("flt", "ids"),
    [
        (VmFilter(), ["vm-3", "vm-1", "vm-4", "vm-2"]),  # by name, then id
        (VmFilter(name_glob="web-*"), ["vm-1", "vm-4", "vm-2"]),
        (VmFilter(name_glob="*-0[2]"), ["vm-2"]),
        (VmFilter(name_glob="WEB-*"), []),  # case-sensitive, like vSphere names
        (VmFilter(power_state=PowerState.ON), ["vm-3", "vm-1"]),
        (VmFilter(folder="/DC0/vm/prod"), ["vm-1", "vm-2"]),  # a prefix of whole path segments only
        (VmFilter(folder="/DC0/vm/prod/"), ["vm-1", "vm-2"]),
        (VmFilter(folder="group-q"), ["vm-3"]),
        (VmFilter(concern_category=ConcernCategory.CRITICAL), ["vm-3"]),
        (VmFilter(concern_category=ConcernCategory.WARNING, name_glob="web*"), ["vm-1"]),
    ],
)
def test_filters(flt: VmFilter, ids: list[str]) -> None:
    assert _names(flt) == ids


def _many(n: int) -> list[Vm]:
    return select([Vm(id=f"vm-{i}", name=f"vm{i:04d}") for i in range(n)], lambda v: True)


def test_paging_walks_everything_once() -> None:
    vms = _many(25)
    seen, token, pages = [], "", 0
    while True:
        page = paginate(vms, 10, token)
        assert page.total == 25
        seen += page.items
        pages += 1
        token = page.next_token
        if not token:
            break
    assert seen == vms and pages == 3


def test_page_tokens_survive_inserts_and_deletes_between_pages() -> None:
    vms = _many(6)
    first = paginate(vms, 3)
    assert [v.name for v in first.items] == ["vm0000", "vm0001", "vm0002"]
    # vm0001 is deleted and vm0000a is created before the client asks for page 2: nothing is skipped or repeated.
    changed = select([v for v in vms if v.name != "vm0001"] + [Vm(id="vm-x", name="vm0000a")], lambda v: True)
    second = paginate(changed, 3, first.next_token)
    assert [v.name for v in second.items] == ["vm0003", "vm0004", "vm0005"]
    assert second.next_token == ""


def test_page_size_defaults_and_limits() -> None:
    vms = _many(MAX_PAGE_SIZE + 5)
    assert len(paginate(vms).items) == DEFAULT_PAGE_SIZE
    assert len(paginate(vms, 10**6).items) == MAX_PAGE_SIZE
    with pytest.raises(QueryError, match="^page_size"):
        paginate(vms, -1)


@pytest.mark.parametrize("token", ["garbage!", "bm90IGpzb24", "e30"])
def test_bad_tokens_are_named(token: str) -> None:
    with pytest.raises(QueryError, match="^page_token"):
        paginate(_many(3), 1, token)


def test_empty_listing() -> None:
    page = paginate([], 10)
    assert (page.items, page.next_token, page.total) == ([], "", 0)


def test_find_vm_by_id_or_unique_name() -> None:
    assert find_vm(VMS, "vm-4").id == "vm-4"
    assert find_vm(VMS, "db-01").id == "vm-3"
    with pytest.raises(QueryError, match="2 VMs are named 'web-01' \\(vm-1, vm-4\\)"):
        find_vm(VMS, "web-01")
    with pytest.raises(LookupError, match="no VM"):
        find_vm(VMS, "nope")
    assert find_vm([replace(VMS[0], name="vm-4"), VMS[3]], "vm-4").id == "vm-4"  # ids win over names
