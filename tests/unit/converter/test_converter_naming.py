"""DNS-1123 names the way Forklift derives them, with deterministic collision suffixes."""

from __future__ import annotations

import pytest

from mtv.converter import naming
from mtv.converter.errors import InvalidNameError


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("Web01", "web01"),
        ("my_vm+test*a/b\\c d", "my-vm-test-a-b-c-d"),  # _ + * / \ and space -> "-"
        ("db#01(prod)", "db01prod"),  # other invalid characters dropped
        ("a___b  c", "a-b-c"),  # runs collapse
        ("--edge--", "edge"),  # trimmed
        ("web.Example.COM", "web.example.com"),  # dots kept, as Forklift does
        ("a-.-b", "a.b"),  # each dot-separated part trimmed
        ("x" * 70, "x" * 63),
        ("日本語", ""),
    ],
)
def test_normalize(source: str, expected: str) -> None:
    assert naming.normalize(source) == expected
    assert expected == "" or naming.is_valid(expected)


def test_cut_at_63_never_ends_in_a_dash() -> None:
    name = naming.normalize("a" * 62 + "_b")
    assert name == "a" * 62 and naming.is_valid(name)


def test_collision_suffix_is_deterministic_and_63_max() -> None:
    long = "x" * 63
    first = naming.target_name(long, "vm-1", taken={long})
    assert first == naming.target_name(long, "vm-1", taken={long})
    assert len(first) == 63 and first.startswith("x" * 58 + "-")
    assert naming.target_name(long, "vm-2", taken={long}) != first  # another VM, another suffix
    # If the suffixed name is taken too, a different (still deterministic) one is chosen.
    second = naming.target_name(long, "vm-1", taken={long, first})
    assert second not in (long, first) and naming.is_valid(second)


def test_no_collision_keeps_the_normalized_name() -> None:
    assert naming.target_name("DB 01", "vm-1", taken={"db-02"}) == "db-01"


def test_empty_after_normalization_is_an_error_naming_the_fix() -> None:
    with pytest.raises(InvalidNameError) as info:
        naming.target_name("%%%", "vm-9")
    assert info.value.field == "vm.name"
    assert "vm-9" in str(info.value) and "vms[].target_name" in str(info.value)


def test_requested_target_name_wins() -> None:
    assert naming.target_name("whatever", "vm-1", taken={"custom"}, requested="custom") == "custom"


def test_volume_name_template_variables_and_truncation() -> None:
    assert naming.volume_name("{{plan}}-{{vm}}-disk-{{index}}", "Plan A", "db01", "vm-42", 3) == "plan-a-db01-disk-3"
    assert naming.volume_name("{{ vmid }}-{{index}}", "p", "v", "vm-42", 0) == "vm-42-0"
    long = naming.volume_name("{{plan}}-{{vm}}-disk-{{index}}", "p" * 60, "v" * 60, "vm-1", 12)
    assert len(long) <= 63 and long.endswith("-disk-12") and naming.is_valid(long)
    with pytest.raises(KeyError):
        naming.volume_name("{{nope}}", "p", "v", "i", 0)


def test_label_value() -> None:
    assert naming.label_value("Plan A/1") == "Plan-A-1"
    assert len(naming.label_value("x" * 100)) == 63
