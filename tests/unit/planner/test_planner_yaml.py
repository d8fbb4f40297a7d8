"""Plan files: a good one parses into the domain spec; every mistake names the field and its line."""

from __future__ import annotations

import pytest

from mtv import model as m
from mtv.planner import plan_yaml
from mtv.planner.errors import PlanSpecError

GOOD = """\
name: web-tier
description: the web servers
provider: {source: vcenter-1}
target: {type: kubernetes, context: prod}
targetNamespace: migrated
type: cold
targetPowerState: "on"
pvcNameTemplate: "{{vm}}-disk-{{index}}"
maxInFlight: 4
vms:
  - id: vm-42
  - name: db01
    targetName: db-01
map:
  network:
    - source: {name: VM Network}
      destination: {type: pod}
    - source: {id: dvportgroup-12}
      destination: {type: multus, namespace: net-ns, name: storage}
    - source: backup
      destination: {type: ignored}
  storage:
    - source: {name: LocalDS_0}
      destination: {storageClass: fast, volumeMode: Block, accessMode: ReadWriteMany}
"""


def _problems(text: str) -> list[tuple[int, str, str]]:
    with pytest.raises(PlanSpecError) as err:
        plan_yaml.parse(text, "plan.yaml")
    assert "Traceback" not in str(err.value)
    return [(p.line, p.field, p.message) for p in err.value.problems]


def test_a_complete_plan_parses_into_the_spec() -> None:
    spec = plan_yaml.parse(GOOD)
    assert spec == m.PlanSpec(
        name="web-tier", description="the web servers", source_provider="vcenter-1", target_namespace="migrated",
        vms=(m.PlanVm(id="vm-42"), m.PlanVm(name="db01", target_name="db-01")),
        network_map=(m.NetworkMapping("VM Network", m.NetworkDestination.POD),
                     m.NetworkMapping("dvportgroup-12", m.NetworkDestination.MULTUS, "net-ns/storage"),
                     m.NetworkMapping("backup", m.NetworkDestination.IGNORED)),
        storage_map=(m.StorageMapping("LocalDS_0", "fast", "Block", "ReadWriteMany"),),
        target_kind=m.TargetKind.KUBERNETES, target_context="prod", target_power_state=m.TargetPowerState.ON,
        pvc_name_template="{{vm}}-disk-{{index}}", max_in_flight=4)
    # The same spec survives the gRPC edge and passes the shared checks.
    assert m.plan_from_proto(m.plan_to_proto(spec)) == spec
    assert plan_yaml.check_spec(spec) == []


def test_defaults_local_target_and_ten_in_flight() -> None:
    spec = plan_yaml.parse("name: p\nprovider: {source: v}\ntargetNamespace: ns\nvms: [{id: vm-1}]\n"
                           "map: {network: [], storage: []}\n")
    assert (spec.target_kind, spec.max_in_flight, spec.migration_type) == (m.TargetKind.LOCAL, 10, "cold")
    assert spec.pvc_name_template == m.DEFAULT_PVC_NAME_TEMPLATE


def test_unknown_fields_are_named_with_their_line() -> None:
    text = GOOD.replace("  - id: vm-42\n", "  - id: vm-42\n    color: blue\n").replace("type: cold", "kind: cold")
    assert _problems(text) == [
        (6, "kind", "unknown field (known: name, description, provider, target, targetNamespace, type, "
                    "targetPowerState, pvcNameTemplate, maxInFlight, vms, map)"),
        (12, "vms[0].color", "unknown field (known: id, name, targetName)"),
    ]


def test_wrong_types_are_named_with_their_line() -> None:
    text = GOOD.replace("maxInFlight: 4", "maxInFlight: four").replace("targetNamespace: migrated",
                                                                      "targetNamespace: [a, b]")
    problems = _problems(text)
    assert (5, "targetNamespace", "expected a string, got a list") in problems
    assert (9, "maxInFlight", "expected an integer, got a string 'four'") in problems


def test_a_number_where_a_name_belongs_says_quote_it() -> None:
    problems = _problems(GOOD.replace("  - id: vm-42", "  - id: 42"))
    assert problems == [(11, "vms[0].id", "expected a string, got an integer '42' (quote it)")]


def test_missing_maps_and_required_fields() -> None:
    text = "name: p\nprovider: {}\nvms: [{id: vm-1}]\nmap:\n  network: []\n"
    assert _problems(text) == [
        (1, "targetNamespace", "required"),
        (2, "provider.source", "required"),
        (5, "map.storage", "required"),
    ]
    assert _problems("name: p\nprovider: {source: v}\ntargetNamespace: ns\nvms: [{id: vm-1}]\n") == [
        (1, "map", "required")]


def test_bad_choices_and_destinations() -> None:
    text = GOOD.replace("{type: pod}", "{type: bridge}").replace("volumeMode: Block", "volumeMode: block")
    text = text.replace("destination: {type: ignored}", "destination: {}")
    problems = _problems(text)
    assert (17, "map.network[0].destination.type", "expected one of pod, multus, ignored, got 'bridge'") in problems
    assert (21, "map.network[2].destination.type", "required") in problems
    assert (24, "map.storage[0].destination.volumeMode", "expected one of Filesystem, Block, got 'block'") in problems


def test_semantic_rules_are_reported_with_lines_too() -> None:
    text = GOOD.replace("name: web-tier", "name: Web_Tier").replace("maxInFlight: 4", "maxInFlight: 0")
    text = text.replace("{{vm}}-disk-{{index}}", "{{vm}}-{{colour}}").replace("type: cold", "type: warm")
    text = text.replace("source: backup", "source: {name: VM Network}")
    problems = _problems(text)
    fields = {(line, f) for line, f, _ in problems}
    assert fields == {(1, "name"), (6, "type"), (9, "maxInFlight"), (8, "pvcNameTemplate"),
                      (20, "map.network[2].source")}
    assert any("only cold migration" in msg for _, _, msg in problems)
    assert any("{{index}}" in msg for _, _, msg in problems)


def test_yaml_syntax_errors_have_a_line() -> None:
    assert _problems("name: p\nvms: [\n")[0][0] == 3
    assert _problems("")[0][2] == "the file is empty"
    assert _problems("- a\n- b\n") == [(1, "(document)", "expected a mapping, got a list")]


def test_error_message_names_file_field_and_line() -> None:
    with pytest.raises(PlanSpecError) as err:
        plan_yaml.parse(GOOD.replace("maxInFlight: 4", "maxInFlight: x"), "plans/web.yaml")
    assert str(err.value) == "plans/web.yaml: line 9: maxInFlight: expected an integer, got a string 'x'"


def test_check_spec_of_a_grpc_plan_uses_yaml_names() -> None:
    spec = m.PlanSpec(name="p", source_provider="", target_namespace="ns", vms=(m.PlanVm(),),
                      network_map=(m.NetworkMapping("a", m.NetworkDestination.MULTUS, "no-slash"),),
                      storage_map=(m.StorageMapping("ds", ""),), target_kind=m.TargetKind.KUBERNETES)
    assert [p.field for p in plan_yaml.check_spec(spec)] == [
        "provider.source", "target.context", "vms[0]", "map.network[0].destination",
        "map.storage[0].destination.storageClass"]


def test_planner_findings_are_located_in_the_file() -> None:
    parsed = plan_yaml.parse_document(GOOD)
    assert parsed.line_of(plan_yaml.CONCERN_FIELDS["plan.provider.not_found"]) == 3
    assert parsed.line_of(plan_yaml.CONCERN_FIELDS["plan.network.unmapped"]) == 15
    assert parsed.line_of("map.network[1].destination.name") == 19  # the nearest located parent
    assert parsed.line_of("noSuchField") == 1
