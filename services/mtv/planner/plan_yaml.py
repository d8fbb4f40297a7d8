"""Plan files: YAML shaped like Forklift's Plan + NetworkMap + StorageMap, parsed into `model.PlanSpec`.

    name: web-tier                       # a DNS-1123 label; the plan's handle in mtvctl
    description: optional text
    provider: {source: vcenter-1}        # source provider name or id
    target: {type: local, path: /srv/mtv/target}     # or {type: kubernetes, context: prod}
    targetNamespace: migrated
    type: cold                           # warm comes later
    targetPowerState: auto               # on | off | auto (as the source was)
    pvcNameTemplate: "{{plan}}-{{vm}}-disk-{{index}}"
    maxInFlight: 10                      # VMs migrating at once; the rest queue
    vms:
      - id: vm-42
      - name: db01
        targetName: db-01
    map:
      network:
        - source: {name: VM Network}     # or {id: network-7}, or a plain string
          destination: {type: pod}       # pod | multus (with namespace + name) | ignored
      storage:
        - source: {name: LocalDS_0}
          destination: {storageClass: standard, volumeMode: Filesystem, accessMode: ReadWriteOnce}

Parsing is pure. Every problem is collected (not only the first) and names the field path and its
line, from the YAML node marks (`yaml.compose`), so a user fixes a file in one pass.
`check_spec` holds the rules that do not depend on YAML; the gRPC CreatePlan runs it too.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import yaml

from mtv import model as m
from mtv.planner.errors import PlanSpecError, Problem

try:  # the converter owns naming; fall back to the same rules if it is not installed
    from mtv.converter.naming import TEMPLATE_VARIABLES, template_variables
except ImportError:  # pragma: no cover - the converter ships in the same distribution
    TEMPLATE_VARIABLES = ("plan", "vm", "index", "vmid")

    def template_variables(template: str) -> list[str]:
        return re.findall(r"\{\{\s*([A-Za-z_]+)\s*\}\}", template)

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
VOLUME_MODES = ("Filesystem", "Block")
ACCESS_MODES = ("ReadWriteOnce", "ReadWriteMany", "ReadOnlyMany")
MAX_IN_FLIGHT_LIMIT = 1000

_STR, _INT, _BOOL = "tag:yaml.org,2002:str", "tag:yaml.org,2002:int", "tag:yaml.org,2002:bool"
_KIND_NAMES = {_STR: "a string", _INT: "an integer", _BOOL: "a boolean", "tag:yaml.org,2002:null": "empty",
               "tag:yaml.org,2002:float": "a number", "tag:yaml.org,2002:map": "a mapping",
               "tag:yaml.org,2002:seq": "a list"}


class _Reader:
    """Walks composed YAML nodes, collecting problems and the line of every field path."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []
        self.lines: dict[str, int] = {}

    def problem(self, path: str, message: str, node: yaml.Node | None = None) -> None:
        line = node.start_mark.line + 1 if node is not None else self.line_of(path)
        self.problems.append(Problem(path, message, line))

    def line_of(self, path: str) -> int:
        return _nearest_line(self.lines, path)

    def mapping(self, node: yaml.Node, path: str, known: tuple[str, ...],
                required: tuple[str, ...] = ()) -> dict[str, yaml.Node] | None:
        self.lines[path] = node.start_mark.line + 1
        if not isinstance(node, yaml.MappingNode):
            self.problem(path or "(document)", f"expected a mapping, got {_kind(node)}", node)
            return None
        fields: dict[str, yaml.Node] = {}
        for key_node, value in node.value:
            key = str(key_node.value)
            sub = f"{path}.{key}" if path else key
            if key not in known:
                self.problem(sub, f"unknown field (known: {', '.join(known)})", key_node)
            elif key in fields:
                self.problem(sub, "given twice", key_node)
            else:
                fields[key] = value
                self.lines[sub] = key_node.start_mark.line + 1  # "network:", not its list's first item
        for name in required:
            if name not in fields:
                self.problem(f"{path}.{name}" if path else name, "required", node)
        return fields

    def scalar(self, node: yaml.Node | None, path: str, tag: str) -> Any:
        if node is None:
            return None
        if not isinstance(node, yaml.ScalarNode) or node.tag != tag:
            hint = " (quote it)" if tag == _STR and isinstance(node, yaml.ScalarNode) else ""
            self.problem(path, f"expected {_KIND_NAMES[tag]}, got {_kind(node)}{hint}", node)
            return None
        if tag == _INT:
            return int(yaml.safe_load(node.value))
        if tag == _BOOL:
            return bool(yaml.safe_load(node.value))
        return str(node.value)

    def string(self, fields: dict[str, yaml.Node], name: str, path: str, default: str = "") -> str:
        value = self.scalar(fields.get(name), _join(path, name), _STR)
        return default if value is None else value

    def choice(self, fields: dict[str, yaml.Node], name: str, path: str, options: tuple[str, ...],
               default: str) -> str:
        value = self.string(fields, name, path, default)
        if value not in options:
            self.problem(_join(path, name), f"expected one of {', '.join(options)}, got {value!r}", fields.get(name))
            return default
        return value

    def items(self, node: yaml.Node | None, path: str) -> list[tuple[str, yaml.Node]]:
        if node is None:
            return []
        if not isinstance(node, yaml.SequenceNode):
            self.problem(path, f"expected a list, got {_kind(node)}", node)
            return []
        for i, item in enumerate(node.value):
            self.lines[f"{path}[{i}]"] = item.start_mark.line + 1
        return [(f"{path}[{i}]", item) for i, item in enumerate(node.value)]


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    return f"{_KIND_NAMES.get(node.tag, node.tag)} {node.value!r}"


@dataclass(frozen=True)
class ParsedPlan:
    spec: m.PlanSpec
    lines: dict[str, int]  # field path -> line, e.g. "provider.source" -> 3

    def line_of(self, field: str) -> int:
        """The line of `field`, else of its nearest parent that has one."""
        return _nearest_line(self.lines, field)


def _nearest_line(lines: dict[str, int], path: str) -> int:
    """The line of `path` or of its nearest ancestor ("a.b[2].c" -> "a.b[2]" -> "a.b" -> "a"); else 1."""
    while path:
        if path in lines:
            return lines[path]
        parent = re.sub(r"(\.[^.\[]*|\[\d+\])$", "", path)
        path = "" if parent == path else parent
    return lines.get("", 1)


def parse(text: str, source: str = "") -> m.PlanSpec:
    """Parse a plan file; raise PlanSpecError listing every problem with its field and line."""
    return parse_document(text, source).spec


def parse_document(text: str, source: str = "") -> ParsedPlan:
    """`parse`, keeping the line of every field (for findings the planner reports later, by field)."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 0
        raise PlanSpecError([Problem("(document)", f"not valid YAML: {getattr(exc, 'problem', exc)}", line)],
                            source) from None
    if root is None:
        raise PlanSpecError([Problem("(document)", "the file is empty", 1)], source)
    reader = _Reader()
    spec = _plan(reader, root)
    if spec is not None and not reader.problems:
        reader.problems.extend(Problem(p.field, p.message, reader.line_of(p.field)) for p in check_spec(spec))
    if reader.problems:
        raise PlanSpecError(sorted(reader.problems, key=lambda p: p.line), source)
    assert spec is not None
    return ParsedPlan(spec, dict(reader.lines))


# Where in a plan file the planner's validation findings point (concern id -> field path).
CONCERN_FIELDS = {
    "plan.provider.not_found": "provider.source",
    "plan.vm.not_found": "vms", "plan.vm.ambiguous": "vms", "plan.vm.duplicate": "vms",
    "plan.network.unmapped": "map.network", "plan.storage.unmapped": "map.storage",
    "plan.map.source_not_found": "map",
    "plan.target_name.invalid": "vms", "plan.target_name.collision": "vms", "plan.target_name.renamed": "vms",
}


_TOP = ("name", "description", "provider", "target", "targetNamespace", "type", "targetPowerState",
        "pvcNameTemplate", "maxInFlight", "vms", "map")


def _plan(r: _Reader, root: yaml.Node) -> m.PlanSpec | None:
    f = r.mapping(root, "", _TOP, required=("name", "provider", "targetNamespace", "vms", "map"))
    if f is None:
        return None
    provider = r.mapping(f["provider"], "provider", ("source",), ("source",)) if "provider" in f else None
    target_kind, target_path, target_context = _target(r, f.get("target"))
    max_in_flight = r.scalar(f.get("maxInFlight"), "maxInFlight", _INT)
    networks, storage = _maps(r, f.get("map"))
    return m.PlanSpec(
        name=r.string(f, "name", ""),
        description=r.string(f, "description", ""),
        source_provider=r.string(provider, "source", "provider") if provider else "",
        target_namespace=r.string(f, "targetNamespace", ""),
        vms=tuple(_vm(r, path, node) for path, node in r.items(f.get("vms"), "vms")),
        network_map=networks,
        storage_map=storage,
        target_kind=target_kind,
        target_path=target_path,
        target_context=target_context,
        migration_type=r.choice(f, "type", "", ("cold", "warm"), "cold"),
        target_power_state=m.TargetPowerState(r.choice(f, "targetPowerState", "", ("auto", "on", "off"), "auto")),
        pvc_name_template=r.string(f, "pvcNameTemplate", "", m.DEFAULT_PVC_NAME_TEMPLATE),
        max_in_flight=m.DEFAULT_MAX_IN_FLIGHT if max_in_flight is None else max_in_flight,
    )


def _target(r: _Reader, node: yaml.Node | None) -> tuple[m.TargetKind, str, str]:
    if node is None:
        return m.TargetKind.LOCAL, "", ""
    f = r.mapping(node, "target", ("type", "path", "context"), ("type",))
    if f is None:
        return m.TargetKind.LOCAL, "", ""
    kind = m.TargetKind(r.choice(f, "type", "target", ("local", "kubernetes"), "local"))
    return kind, r.string(f, "path", "target"), r.string(f, "context", "target")


def _vm(r: _Reader, path: str, node: yaml.Node) -> m.PlanVm:
    f = r.mapping(node, path, ("id", "name", "targetName"))
    if f is None:
        return m.PlanVm()
    return m.PlanVm(id=r.string(f, "id", path), name=r.string(f, "name", path),
                    target_name=r.string(f, "targetName", path))


def _maps(r: _Reader, node: yaml.Node | None
          ) -> tuple[tuple[m.NetworkMapping, ...], tuple[m.StorageMapping, ...]]:
    if node is None:
        return (), ()
    f = r.mapping(node, "map", ("network", "storage"), ("network", "storage"))
    if f is None:
        return (), ()
    networks = tuple(_mapped(r, p, n, _NETWORK_FIELDS, _network) for p, n in r.items(f.get("network"), "map.network"))
    storage = tuple(_mapped(r, p, n, _STORAGE_FIELDS, _storage) for p, n in r.items(f.get("storage"), "map.storage"))
    return networks, storage


_NETWORK_FIELDS = ("type", "namespace", "name")
_STORAGE_FIELDS = ("storageClass", "volumeMode", "accessMode")


def _mapped(r: _Reader, path: str, node: yaml.Node, known: tuple[str, ...], build: Callable[..., Any]) -> Any:
    f = r.mapping(node, path, ("source", "destination"), ("source", "destination")) or {}
    source = _source(r, f.get("source"), f"{path}.source")
    dest = r.mapping(f["destination"], f"{path}.destination", known) if "destination" in f else None
    return build(r, source, dest or {}, f"{path}.destination")


def _source(r: _Reader, node: yaml.Node | None, path: str) -> str:
    """`source: name`, `source: {id: x}` or `source: {name: x}`: MTV matches ids and names alike."""
    if node is None:
        return ""
    if isinstance(node, yaml.ScalarNode):
        return r.scalar(node, path, _STR) or ""
    f = r.mapping(node, path, ("id", "name"))
    if f is None:
        return ""
    if len(f) != 1:
        r.problem(path, "give exactly one of id or name", node)
        return ""
    key = next(iter(f))
    return r.string(f, key, path)


def _network(r: _Reader, source: str, f: dict[str, yaml.Node], path: str) -> m.NetworkMapping:
    if "type" not in f:
        r.problem(f"{path}.type", "required")
    kind = r.choice(f, "type", path, ("pod", "multus", "ignored"), "pod")
    name, namespace = r.string(f, "name", path), r.string(f, "namespace", path)
    if namespace and name:
        name = f"{namespace}/{name}"
    return m.NetworkMapping(source, m.NetworkDestination(kind), name)


def _storage(r: _Reader, source: str, f: dict[str, yaml.Node], path: str) -> m.StorageMapping:
    if "storageClass" not in f:
        r.problem(f"{path}.storageClass", "required")
    return m.StorageMapping(source, r.string(f, "storageClass", path),
                            r.choice(f, "volumeMode", path, VOLUME_MODES, "Filesystem"),
                            r.choice(f, "accessMode", path, ACCESS_MODES, "ReadWriteOnce"))


def check_spec(spec: m.PlanSpec) -> list[Problem]:
    """Rules every plan must meet, whichever way it arrived. Field paths use the YAML names."""
    problems: list[Problem] = []

    def need(ok: bool, field: str, message: str) -> None:
        if not ok:
            problems.append(Problem(field, message))

    need(bool(DNS_LABEL.match(spec.name)), "name",
         f"{spec.name!r} is not a DNS-1123 label (lowercase letters, digits and '-', at most 63)")
    need(bool(spec.source_provider), "provider.source", "required: the source provider's name or id")
    need(bool(DNS_LABEL.match(spec.target_namespace)), "targetNamespace",
         f"{spec.target_namespace!r} is not a DNS-1123 label")
    need(spec.migration_type == "cold", "type", "only cold migration is supported so far")
    need(1 <= spec.max_in_flight <= MAX_IN_FLIGHT_LIMIT, "maxInFlight",
         f"{spec.max_in_flight} is outside 1..{MAX_IN_FLIGHT_LIMIT}")
    if spec.target_kind is m.TargetKind.KUBERNETES:
        need(bool(spec.target_context), "target.context", "required for a kubernetes target: a kubeconfig context")
    elif spec.target_path:
        need(spec.target_path.startswith("/"), "target.path", f"{spec.target_path!r} must be an absolute path")
    unknown = sorted(set(template_variables(spec.pvc_name_template)) - set(TEMPLATE_VARIABLES))
    need(not unknown, "pvcNameTemplate", f"unknown variable(s) {', '.join(unknown)}; known: "
                                         f"{', '.join(TEMPLATE_VARIABLES)}")
    need("index" in template_variables(spec.pvc_name_template), "pvcNameTemplate",
         "must contain {{index}}, or the disks of one VM get the same volume name")
    need(bool(spec.vms), "vms", "list at least one VM")
    for i, vm in enumerate(spec.vms):
        need(bool(vm.id or vm.name), f"vms[{i}]", "give the VM's id or name")
    _check_maps(spec, need)
    return problems


def _check_maps(spec: m.PlanSpec, need: Callable[[bool, str, str], None]) -> None:
    seen: set[str] = set()
    pods = 0
    for i, net in enumerate(spec.network_map):
        path = f"map.network[{i}]"
        need(bool(net.source), f"{path}.source", "required")
        need(net.source not in seen, f"{path}.source", f"{net.source!r} is mapped twice")
        seen.add(net.source)
        pods += net.type is m.NetworkDestination.POD
        if net.type is m.NetworkDestination.MULTUS:
            need(bool(re.fullmatch(r"[a-z0-9-]+/[a-z0-9.-]+", net.name)), f"{path}.destination",
                 f"multus needs the NetworkAttachmentDefinition as namespace and name, got {net.name!r}")
    need(pods <= 1, "map.network", "only one source network can go to the pod network")
    seen.clear()
    for i, st in enumerate(spec.storage_map):
        path = f"map.storage[{i}]"
        need(bool(st.source), f"{path}.source", "required")
        need(st.source not in seen, f"{path}.source", f"{st.source!r} is mapped twice")
        seen.add(st.source)
        need(bool(st.storage_class), f"{path}.destination.storageClass", "required")
        need(st.volume_mode in VOLUME_MODES, f"{path}.destination.volumeMode",
             f"expected one of {', '.join(VOLUME_MODES)}")
        need(st.access_mode in ACCESS_MODES, f"{path}.destination.accessMode",
             f"expected one of {', '.join(ACCESS_MODES)}")
