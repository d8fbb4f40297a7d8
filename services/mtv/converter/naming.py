"""Kubernetes names for migrated VMs and their volumes, the way Forklift derives them.

Rules (kubev2v/forklift pkg/controller/plan/util/utils.go), with two deliberate differences:
a name that normalizes to nothing is an error (Forklift invents `vm-xxxx`, which hides a broken
source name), and the collision suffix is a hash of the VM id instead of random characters, so a
re-run of the same plan picks the same name.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Collection, Mapping

from mtv.converter.errors import InvalidNameError

MAX_NAME = 63
# On a clash: cut to 58, then "-" + 4 characters = 63.
SUFFIX_CUT = 58
_REPLACED = re.compile(r"[_+*/\\ ]")
_INVALID = re.compile(r"[^a-z0-9.-]")
_DASHES = re.compile(r"-+")
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_VALUE_INVALID = re.compile(r"[^A-Za-z0-9_.-]")
_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"


def normalize(name: str) -> str:
    """DNS-1123 subdomain of at most 63 characters; "" when nothing valid is left.

    Dots survive, as in Forklift, so "web.example.com" stays readable; each dot-separated part
    is trimmed of dashes so every part is a valid DNS label.
    """
    text = _REPLACED.sub("-", name.lower())
    text = _DASHES.sub("-", _INVALID.sub("", text))
    return _tidy(text[:MAX_NAME])


def _tidy(text: str) -> str:
    parts = [part.strip("-") for part in text.split(".")]
    return ".".join(part for part in parts if part)


def is_valid(name: str) -> bool:
    return 0 < len(name) <= MAX_NAME and bool(_SUBDOMAIN.match(name))


def is_valid_label(name: str) -> bool:
    return 0 < len(name) <= MAX_NAME and bool(_LABEL.match(name))


def short_hash(seed: str, length: int = 4) -> str:
    """`length` lowercase alphanumerics derived from `seed` (stable across runs and machines)."""
    number = int.from_bytes(hashlib.sha256(seed.encode()).digest()[:8], "big")
    chars = []
    for _ in range(length):
        number, rem = divmod(number, len(_ALPHABET))
        chars.append(_ALPHABET[rem])
    return "".join(chars)


def with_suffix(base: str, seed: str) -> str:
    return f"{_tidy(base[:SUFFIX_CUT]) or 'vm'}-{short_hash(seed)}"


def target_name(vm_name: str, vm_id: str, taken: Collection[str] = (), requested: str = "") -> str:
    """The target name of a VM: `requested` if given (must be valid), else the normalized source
    name, with a `-xxxx` suffix (hash of the VM id) when another VM already took it."""
    if requested:
        if not is_valid(requested):
            raise InvalidNameError(
                f"{requested!r} is not a valid DNS-1123 name of at most {MAX_NAME} characters",
                field="vms[].target_name", vm_id=vm_id, vm_name=vm_name,
                fix="use lowercase letters, digits, '-' and '.', starting and ending with a letter or digit",
            )
        return requested
    name = normalize(vm_name)
    if not name:
        raise InvalidNameError(
            "the VM name has no character that is valid in a Kubernetes name",
            field="vm.name", vm_id=vm_id, vm_name=vm_name,
            fix="rename the source VM or set vms[].target_name in the plan",
        )
    if name not in taken:
        return name
    # Another seed on each round, should two VMs' hashes ever meet: still deterministic.
    for attempt in range(100):
        candidate = with_suffix(name, vm_id if attempt == 0 else f"{vm_id}#{attempt}")
        if candidate not in taken:
            return candidate
    raise InvalidNameError(  # pragma: no cover - needs 100 hash collisions
        f"no free name derived from {name!r}", field="vm.name", vm_id=vm_id, vm_name=vm_name,
        fix="set vms[].target_name in the plan",
    )


def label_value(text: str) -> str:
    """A valid label value (≤ 63, alphanumerics at both ends): for plan names and VM ids."""
    value = _LABEL_VALUE_INVALID.sub("-", text)[:MAX_NAME]
    return value.strip("-_.")


_VARIABLE = re.compile(r"\{\{\s*([A-Za-z_]+)\s*\}\}")
TEMPLATE_VARIABLES = ("plan", "vm", "index", "vmid")


def render_template(template: str, values: Mapping[str, str]) -> str:
    """Fill `{{name}}` variables; unknown variables raise KeyError with the name."""
    return _VARIABLE.sub(lambda m: values[m.group(1)], template)


def template_variables(template: str) -> list[str]:
    return _VARIABLE.findall(template)


def volume_name(template: str, plan: str, vm: str, vm_id: str, index: int) -> str:
    """A volume name from `pvcNameTemplate`, normalized and at most 63 characters.

    When the result is too long the longest variable value is shortened, one character at a time,
    so the literal parts and the disk index survive (cutting the end would make disks collide).
    Raises KeyError for an unknown variable.
    """
    values = {"plan": normalize(plan), "vm": normalize(vm), "vmid": normalize(vm_id), "index": str(index)}
    for name in template_variables(template):
        if name not in values:
            raise KeyError(name)
    while len(_raw(template, values)) > MAX_NAME:
        longest = max(("plan", "vm", "vmid"), key=lambda k: len(values[k]))
        if not values[longest]:
            break  # only literals left: normalize() cuts them to 63
        values[longest] = values[longest][:-1].rstrip("-.")
    return normalize(render_template(template, values))


def _raw(template: str, values: Mapping[str, str]) -> str:
    return _DASHES.sub("-", _INVALID.sub("", _REPLACED.sub("-", render_template(template, values).lower())))
