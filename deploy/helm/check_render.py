"""Check what `helm template` rendered from deploy/helm/mtv: `helm template mtv deploy/helm/mtv [-f ...] |
python deploy/helm/check_render.py --scenario default|scaled` (the release must be named `mtv`).

`default` is the chart's own values; `scaled` is deploy/helm/mtv/ci/scaled-values.yaml (existing Secrets,
the transfer HPA, namespaced converter and transfer RBAC, another cluster's kubeconfig). Prints one summary
line, or every failed expectation and exits 1. Needs only PyYAML.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from typing import Any

import yaml

SERVICES = ("inventory", "planner", "transfer", "converter")
HTTP_PORT = 8080
GRPC = {"inventory": 50051, "planner": 50052}
STANDARD_LABELS = ("app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/version",
                   "app.kubernetes.io/managed-by", "helm.sh/chart")
CONVERTER_RULES = {  # (apiGroup, resource) -> verbs the converter needs
    ("kubevirt.io", "virtualmachines"): {"get", "list", "create", "patch", "delete"},
    ("cdi.kubevirt.io", "datavolumes"): {"get", "list", "create", "patch", "delete"},
    ("", "namespaces"): {"get", "create"},
    ("storage.k8s.io", "storageclasses"): {"get", "list"},
}
TRANSFER_RULES = {  # a CDI upload token per disk: wait for the DataVolume, then an UploadTokenRequest
    ("cdi.kubevirt.io", "datavolumes"): {"get"},
    ("upload.cdi.kubevirt.io", "uploadtokenrequests"): {"create"},
}


class Checker:
    def __init__(self) -> None:
        self.failures: list[str] = []

    def expect(self, ok: object, message: str) -> bool:
        if not ok:
            self.failures.append(message)
        return bool(ok)


def _env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env") or []}


def _rules(role: dict[str, Any]) -> dict[tuple[str, str], set[str]]:
    out: dict[tuple[str, str], set[str]] = {}
    for rule in role.get("rules") or []:
        for group in rule.get("apiGroups") or [""]:
            for resource in rule.get("resources") or []:
                out.setdefault((group, resource), set()).update(rule.get("verbs") or [])
    return out


def check_deployment(c: Checker, name: str, dep: dict[str, Any], scenario: str) -> None:
    pod = dep["spec"]["template"]
    spec = pod["spec"]
    where = f"Deployment {dep['metadata']['name']}"
    c.expect(dep["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items(),
             f"{where}: the selector does not match the pod labels")
    c.expect(pod["metadata"]["labels"].get("app.kubernetes.io/component") == name,
             f"{where}: pod label app.kubernetes.io/component is not {name}")
    annotations = pod["metadata"].get("annotations") or {}
    c.expect(annotations.get("prometheus.io/scrape") == "true"
             and annotations.get("prometheus.io/port") == str(HTTP_PORT)
             and annotations.get("prometheus.io/path") == "/metrics",
             f"{where}: prometheus.io scrape annotations missing or wrong: {annotations}")
    security = spec.get("securityContext") or {}
    c.expect(security.get("runAsNonRoot") is True, f"{where}: pod securityContext.runAsNonRoot is not true")
    volumes = {v["name"]: v for v in spec.get("volumes") or []}

    containers = spec.get("containers") or []
    c.expect(len(containers) == 1, f"{where}: expected 1 container, got {len(containers)}")
    for container in [*spec.get("initContainers", []), *containers]:
        cwhere = f"{where} container {container['name']}"
        csec = container.get("securityContext") or {}
        c.expect(csec.get("readOnlyRootFilesystem") is True, f"{cwhere}: readOnlyRootFilesystem is not true")
        c.expect(csec.get("allowPrivilegeEscalation") is False, f"{cwhere}: allowPrivilegeEscalation is not false")
        resources = container.get("resources") or {}
        c.expect(resources.get("requests") and resources.get("limits"), f"{cwhere}: no resource requests/limits")
        for mount in container.get("volumeMounts") or []:
            c.expect(mount["name"] in volumes, f"{cwhere}: mounts undeclared volume {mount['name']}")
        kafka = _env(container).get("MTV_KAFKA_BOOTSTRAP")
        if container["name"] in ("create-topics", name):
            ref = ((kafka or {}).get("valueFrom") or {}).get("secretKeyRef") or {}
            secret = "kafka-credentials" if scenario == "scaled" else "mtv-kafka"  # release "mtv"
            c.expect(ref.get("name") == secret and ref.get("key") == "bootstrap",
                     f"{cwhere}: MTV_KAFKA_BOOTSTRAP is not secretKeyRef {secret}/bootstrap: {kafka}")

    for container in containers:
        cwhere = f"{where} container {container['name']}"
        c.expect(container.get("command") == [f"mtv-{name}"], f"{cwhere}: command is not [mtv-{name}]")
        env = _env(container)
        c.expect(env.get("MTV_HTTP_HOST", {}).get("value") == "0.0.0.0", f"{cwhere}: MTV_HTTP_HOST is not 0.0.0.0")
        c.expect(env.get("MTV_HTTP_PORT", {}).get("value") == str(HTTP_PORT),
                 f"{cwhere}: MTV_HTTP_PORT is not {HTTP_PORT}")
        ports = {p["name"]: p["containerPort"] for p in container.get("ports") or []}
        c.expect(ports.get("http") == HTTP_PORT, f"{cwhere}: no http port {HTTP_PORT}")
        for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            get = (container.get(probe) or {}).get("httpGet") or {}
            c.expect(get.get("path") == path and get.get("port") in ("http", HTTP_PORT),
                     f"{cwhere}: {probe} is not GET {path} on the http port: {container.get(probe)}")
        if name in GRPC:
            c.expect(ports.get("grpc") == GRPC[name], f"{cwhere}: no grpc port {GRPC[name]}")
        if name in ("inventory", "transfer"):
            c.expect(env.get("MTV_PROVIDER_DIR", {}).get("value") == "/run/mtv/providers",
                     f"{cwhere}: MTV_PROVIDER_DIR is not /run/mtv/providers")
            copied = any(v.get("secret", {}).get("secretName") == "mtv-providers" for v in volumes.values())
            c.expect(copied == (scenario == "scaled"),
                     f"{cwhere}: providers Secret volume {'missing' if scenario == 'scaled' else 'unexpected'}")
        if name == "planner":
            keys = env.get("MTV_APPROVER_KEYS_FILE", {}).get("value")
            if scenario == "scaled":
                c.expect(keys == "/run/mtv/approver-keys/keys.json", f"{cwhere}: MTV_APPROVER_KEYS_FILE is {keys}")
                c.expect(any(v.get("secret", {}).get("secretName") == "mtv-approver-keys" for v in volumes.values()),
                         f"{cwhere}: approver keys Secret volume missing")
            else:
                c.expect(keys is None, f"{cwhere}: MTV_APPROVER_KEYS_FILE without approverKeys.existingSecret")
        if name == "transfer":
            # In-cluster the worker uses its ServiceAccount token; for another cluster, that cluster's kubeconfig.
            kubeconfig = env.get("MTV_TRANSFER_KUBECONFIG", {}).get("value")
            if scenario == "scaled":
                c.expect(kubeconfig == "/etc/mtv/kubeconfig/kubeconfig" and spec.get("serviceAccountName") ==
                         "mtv-transfer" and spec.get("automountServiceAccountToken") is False,
                         f"{cwhere}: expected MTV_TRANSFER_KUBECONFIG from converter.kubeconfig, no token mounted")
            else:
                c.expect(kubeconfig is None and spec.get("automountServiceAccountToken") is True and
                         spec.get("serviceAccountName") == "mtv-transfer",
                         f"{cwhere}: in-cluster workers need ServiceAccount mtv-transfer with its token mounted")
        if name == "converter":
            c.expect(env.get("MTV_KUBECONFIG", {}).get("value", "").startswith("/etc/mtv/kubeconfig/"),
                     f"{cwhere}: MTV_KUBECONFIG not set")
            c.expect("MTV_LOCAL_TARGET_ROOT" in env, f"{cwhere}: MTV_LOCAL_TARGET_ROOT not set")

    if scenario == "scaled" and name in ("inventory", "transfer", "planner"):
        inits = [i["name"] for i in spec.get("initContainers") or []]
        c.expect("copy-secrets" in inits, f"{where}: no copy-secrets init container (existing Secrets)")
    if name == "transfer":
        replicas = dep["spec"].get("replicas")
        if scenario == "scaled":
            c.expect(replicas is None, f"{where}: replicas is set although the HPA owns it ({replicas})")
        else:
            c.expect(replicas == 2, f"{where}: replicas is {replicas}, expected the default 2")
    elif name == "planner":
        c.expect(dep["spec"].get("replicas") == 1 and dep["spec"].get("strategy", {}).get("type") == "Recreate",
                 f"{where}: the planner must be 1 replica with the Recreate strategy")


def check(docs: list[dict[str, Any]], scenario: str) -> tuple[Checker, Counter[str]]:
    c = Checker()
    kinds = Counter(d["kind"] for d in docs)
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
        labels = d["metadata"].get("labels") or {}
        missing = [label for label in STANDARD_LABELS if label not in labels]
        c.expect(not missing, f"{d['kind']} {d['metadata']['name']}: missing labels {missing}")

    deployments = {d["metadata"]["labels"].get("app.kubernetes.io/component"): d for d in by_kind.get("Deployment", [])}
    c.expect(kinds["Deployment"] == 4 and set(deployments) == set(SERVICES),
             f"expected 4 Deployments ({', '.join(SERVICES)}), got {sorted(map(str, deployments))}")
    for name, dep in deployments.items():
        if name in SERVICES:
            check_deployment(c, name, dep, scenario)

    services = {s["metadata"]["name"]: s for s in by_kind.get("Service", [])}
    for name, port in GRPC.items():
        svc = services.get(f"mtv-{name}")
        if c.expect(svc, f"no Service mtv-{name}"):
            ports = {p["name"]: p for p in svc["spec"]["ports"]}
            c.expect(ports.get("grpc", {}).get("port") == port and ports["grpc"].get("targetPort") == "grpc",
                     f"Service mtv-{name}: no grpc port {port} -> grpc")
            c.expect(svc["spec"]["selector"].get("app.kubernetes.io/component") == name,
                     f"Service mtv-{name}: selector does not select the {name} pods")

    hpas = by_kind.get("HorizontalPodAutoscaler", [])
    if scenario == "scaled":
        if c.expect(len(hpas) == 1, f"expected 1 HorizontalPodAutoscaler, got {len(hpas)}"):
            hpa = hpas[0]
            c.expect(hpa["apiVersion"] == "autoscaling/v2", f"HPA apiVersion is {hpa['apiVersion']}")
            c.expect(hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                                       "name": "mtv-transfer"}, "HPA does not target mtv-transfer")
            c.expect((hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 12), "HPA min/max are not 2/12")
            target = hpa["spec"]["metrics"][0]["resource"]
            c.expect(target["name"] == "cpu" and target["target"] == {"type": "Utilization", "averageUtilization": 60},
                     f"HPA metric is not 60% CPU: {target}")
    else:
        c.expect(not hpas, "an HPA is rendered although transfer.autoscaling.enabled is false")

    secrets = {s["metadata"]["name"]: s for s in by_kind.get("Secret", [])}
    if scenario == "scaled":
        c.expect(not secrets, f"chart-managed Secrets although kafka.existingSecret is set: {sorted(secrets)}")
    else:
        kafka = secrets.get("mtv-kafka")
        if c.expect(kafka, "no chart-managed Secret mtv-kafka"):
            c.expect(kafka.get("stringData", {}).get("bootstrap") == "kafka:9092",
                     "Secret mtv-kafka has no bootstrap kafka:9092")

    accounts = {a["metadata"]["name"] for a in by_kind.get("ServiceAccount", [])}
    c.expect({"mtv", "mtv-converter", "mtv-transfer"} <= accounts,
             f"ServiceAccounts mtv, mtv-converter and mtv-transfer expected, got {accounts}")
    converter = deployments.get("converter")
    if converter:
        c.expect(converter["spec"]["template"]["spec"].get("serviceAccountName") == "mtv-converter",
                 "the converter does not run as ServiceAccount mtv-converter")
    roles = by_kind.get("Role", [])
    if scenario == "scaled":
        expected = ["migrated", "migrated", "migrated-test", "migrated-test"]  # converter and transfer in each
        c.expect(sorted(r["metadata"]["namespace"] for r in roles) == expected,
                 f"expected Roles in migrated and migrated-test, got {[r['metadata'].get('namespace') for r in roles]}")
        c.expect(kinds["RoleBinding"] == 4, f"expected 4 RoleBindings, got {kinds['RoleBinding']}")
        cluster_wide = _granted(by_kind, "mtv-converter", ("ClusterRole",))
        c.expect(("kubevirt.io", "virtualmachines") not in cluster_wide,
                 "the ClusterRole grants VMs cluster-wide although targetNamespaces is set")
        c.expect(not _granted(by_kind, "mtv-transfer", ("ClusterRole",)),
                 "the transfer workers get a ClusterRole although targetNamespaces is set")
    else:
        c.expect(not roles, "namespaced Roles rendered although converter.rbac.targetNamespaces is empty")
    for account, needed in (("mtv-converter", CONVERTER_RULES), ("mtv-transfer", TRANSFER_RULES)):
        granted = _granted(by_kind, account, ("ClusterRole", "Role"))
        for key, verbs in needed.items():
            c.expect(verbs <= granted.get(key, set()),
                     f"{account} RBAC lacks {sorted(verbs - granted.get(key, set()))} on {key[1]}.{key[0] or 'core'}")
    expected_crb = 1 if scenario == "scaled" else 2
    c.expect(kinds["ClusterRoleBinding"] == expected_crb,
             f"expected {expected_crb} ClusterRoleBinding(s), got {kinds['ClusterRoleBinding']}")
    return c, kinds


def _granted(by_kind: dict[str, list[dict[str, Any]]], account: str, role_kinds: tuple[str, ...]
             ) -> dict[tuple[str, str], set[str]]:
    """What ServiceAccount `account` is granted through the rendered (Cluster)RoleBindings of `role_kinds`."""
    roles = {(r["kind"], r["metadata"]["name"], r["metadata"].get("namespace")): r
             for kind in role_kinds for r in by_kind.get(kind, [])}
    out: dict[tuple[str, str], set[str]] = {}
    for binding in by_kind.get("ClusterRoleBinding", []) + by_kind.get("RoleBinding", []):
        if not any(s.get("kind") == "ServiceAccount" and s.get("name") == account for s in binding["subjects"]):
            continue
        ref = binding["roleRef"]
        namespace = None if ref["kind"] == "ClusterRole" else binding["metadata"].get("namespace")
        role = roles.get((ref["kind"], ref["name"], namespace))
        for key, verbs in _rules(role or {}).items():
            out.setdefault(key, set()).update(verbs)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scenario", choices=("default", "scaled"), required=True)
    args = parser.parse_args()
    docs = [d for d in yaml.safe_load_all(sys.stdin) if d]
    if not docs:
        print("check_render: nothing rendered on stdin", file=sys.stderr)
        return 1
    checker, kinds = check(docs, args.scenario)
    summary = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
    if checker.failures:
        print(f"check_render {args.scenario}: {len(checker.failures)} problem(s) in {summary}:", file=sys.stderr)
        for failure in checker.failures:
            print(f"  - {failure}", file=sys.stderr)
        return 1
    print(f"check_render {args.scenario}: ok ({summary})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
