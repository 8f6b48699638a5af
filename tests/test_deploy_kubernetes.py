"""deploy/kubernetes: every manifest valid against the Kubernetes schemas, the overlays built
with `kubectl kustomize` around a real artifact, the alert rules checked by promtool, and
the Grafana dashboard's queries naming metrics fw-load exposes."""

from __future__ import annotations

import base64
import copy
import gzip
import hashlib
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.bigpolicy import big_policy_text
from tests.loader_netns import compile_policy

REPO = Path(__file__).resolve().parent.parent
KUBE = REPO / "deploy/kubernetes"
K8S_VERSION = kubernetes_validate.latest_version()

POLICY = """
name: fleet-web
default_action: deny
rules:
  - {name: allow_icmp, priority: 10, action: allow, protocol: icmp}
  - {name: allow_https, priority: 20, action: allow, protocol: tcp, destination_ports: [443]}
"""

# Names fw-load's metrics module exposes today, and those the `fw-load run --watch` work of
# issue 14 adds (the contract the dashboard and the alerts are written against).
CONTRACT_METRICS = {
    "fwc_rule_packets_total",
    "fwc_map_entries",
    "fwc_map_capacity",
    "fwc_applies_total",
    "fwc_apply_duration_seconds",
    "fwc_watch_rejected_total",
    "fwc_policy_info",
}
# metrics of Prometheus itself and of kube-state-metrics that the alerts use
OTHER_METRICS = {"up", "kube_pod_container_status_restarts_total"}

PODMONITOR = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "PodMonitor"},
        "metadata": {"type": "object", "required": ["name", "namespace"]},
        "spec": {
            "type": "object",
            "required": ["selector", "podMetricsEndpoints"],
            "additionalProperties": False,
            "properties": {
                "selector": {
                    "type": "object",
                    "required": ["matchLabels"],
                    "properties": {"matchLabels": {"type": "object"}},
                },
                "podMetricsEndpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["port"],
                        "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string"},
                            "interval": {"type": "string", "pattern": "^[0-9]+[smh]$"},
                            "relabelings": {"type": "array"},
                        },
                    },
                },
            },
        },
    },
}

PROMETHEUSRULE = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "PrometheusRule"},
        "metadata": {"type": "object", "required": ["name", "namespace"]},
        "spec": {
            "type": "object",
            "required": ["groups"],
            "additionalProperties": False,
            "properties": {
                "groups": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["name", "rules"],
                        "additionalProperties": False,
                        "properties": {
                            "name": {"type": "string"},
                            "rules": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "required": ["alert", "expr", "labels", "annotations"],
                                    "additionalProperties": False,
                                    "properties": {
                                        "alert": {"type": "string"},
                                        "expr": {"type": "string"},
                                        "for": {"type": "string"},
                                        "labels": {"type": "object"},
                                        "annotations": {"type": "object"},
                                    },
                                },
                            },
                        },
                    },
                }
            },
        },
    },
}
CRDS = {"PodMonitor": PODMONITOR, "PrometheusRule": PROMETHEUSRULE}


def validate(doc: dict[str, Any]) -> None:
    """Against the Kubernetes schema of its kind (strict: no unknown field), or a CRD's
    structure; raises on an invalid document."""
    if doc["kind"] in CRDS:
        jsonschema.validate(doc, CRDS[doc["kind"]])
    else:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def manifests(folder: Path) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted(folder.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    return docs


@pytest.fixture(scope="module")
def built(
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, tuple[list[dict[str, Any]], bytes]]:
    """Each overlay built by `kubectl kustomize` with an artifact compiled for it: a small
    dry-run one for dev, a tables one of megabytes for prod."""
    work = tmp_path_factory.mktemp("kube")
    shutil.copytree(KUBE, work / "kubernetes")
    out: dict[str, tuple[list[dict[str, Any]], bytes]] = {}
    for overlay in ("dev", "prod"):
        folder = work / "kubernetes/overlays" / overlay
        (folder / "artifact").mkdir()
        text = POLICY if overlay == "dev" else big_policy_text(300)
        built_o = compile_policy(text, work, dry_run=overlay == "dev")
        shutil.copy(built_o, folder / "artifact/fw.o")
        subprocess.run(
            "sha256sum fw.o > fw.o.sha256 && gzip -9 -n fw.o",
            shell=True,
            cwd=folder / "artifact",
            check=True,
        )
        proc = subprocess.run(
            ["kubectl", "kustomize", str(folder)], capture_output=True, text=True, timeout=120
        )
        assert proc.returncode == 0, proc.stderr
        out[overlay] = ([d for d in yaml.safe_load_all(proc.stdout) if d], built_o.read_bytes())
    return out


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def test_every_base_manifest_is_valid() -> None:
    docs = manifests(KUBE / "base")
    assert {d["kind"] for d in docs} == {
        "Namespace",
        "ServiceAccount",
        "DaemonSet",
        "PodMonitor",
        "PrometheusRule",
    }
    for doc in docs:
        validate(doc)


def test_the_validation_has_teeth() -> None:
    (daemonset,) = by_kind(manifests(KUBE / "base"), "DaemonSet")
    bad = copy.deepcopy(daemonset)
    bad["spec"]["template"]["spec"]["hostNetwrok"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(bad)
    bad = copy.deepcopy(daemonset)
    bad["spec"]["updateStrategy"]["rollingUpdate"]["maxUnavailable"] = [1]
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(bad)
    (rule,) = by_kind(manifests(KUBE / "base"), "PrometheusRule")
    rule = copy.deepcopy(rule)
    rule["spec"]["groups"][0]["rules"][0]["exprr"] = "up"
    with pytest.raises(jsonschema.ValidationError):
        validate(rule)


@pytest.mark.parametrize("overlay", ["dev", "prod"])
def test_overlay_builds_valid_manifests_with_the_artifact_and_its_digest(
    built: dict[str, tuple[list[dict[str, Any]], bytes]], overlay: str
) -> None:
    docs, artifact = built[overlay]
    for doc in docs:
        validate(doc)
    (config,) = [d for d in by_kind(docs, "ConfigMap") if "binaryData" in d]
    assert gzip.decompress(base64.b64decode(config["binaryData"]["fw.o.gz"])) == artifact
    # the API server refuses a ConfigMap over 1 MiB
    assert len(json.dumps(config)) < 1 << 20
    if overlay == "prod":
        assert len(artifact) > 1 << 20  # a tables artifact: too big without gzip
    digest, name = config["data"]["fw.o.sha256"].split()
    assert (digest, name) == (hashlib.sha256(artifact).hexdigest(), "fw.o")
    (daemonset,) = by_kind(docs, "DaemonSet")
    pod = daemonset["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    # a new artifact is a new ConfigMap name, so a rollout goes in waves
    assert volumes["delivered"]["configMap"]["name"] == config["metadata"]["name"]
    assert config["metadata"]["name"].startswith("fw-load-artifact-")
    assert "emptyDir" in volumes["artifact"]
    assert volumes["bpffs"]["hostPath"]["path"] == "/sys/fs/bpf"
    assert volumes["run-fwc"]["hostPath"]["path"] == "/run/fwc"
    assert pod["hostNetwork"] is True
    (container,) = pod["containers"]
    assert container["args"][:5] == [
        "run",
        "--watch",
        "/etc/fwc/artifact/fw.o",
        "--metrics-addr",
        "0.0.0.0:9469",
    ]
    assert ("--dry-run" in container["args"]) == (overlay == "dev")
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    rolling = daemonset["spec"]["updateStrategy"]["rollingUpdate"]["maxUnavailable"]
    assert rolling == ("100%" if overlay == "dev" else 1)
    security = container["securityContext"]
    assert security["privileged"] is False and security["capabilities"]["drop"] == ["ALL"]


def unpack(script: str, config: dict[str, Any], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """The init container's script, run here on the ConfigMap's files."""
    delivered, artifact = tmp_path / "delivered", tmp_path / "artifact"
    delivered.mkdir(parents=True)
    artifact.mkdir()
    (delivered / "fw.o.gz").write_bytes(base64.b64decode(config["binaryData"]["fw.o.gz"]))
    (delivered / "fw.o.sha256").write_text(config["data"]["fw.o.sha256"])
    script = script.replace("/etc/fwc/delivered", str(delivered))
    script = script.replace("/etc/fwc/artifact", str(artifact))
    return subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=60)


def test_init_container_unpacks_only_the_pinned_artifact(
    built: dict[str, tuple[list[dict[str, Any]], bytes]], tmp_path: Path
) -> None:
    docs, artifact = built["prod"]
    (config,) = [d for d in by_kind(docs, "ConfigMap") if "binaryData" in d]
    (daemonset,) = by_kind(docs, "DaemonSet")
    (init,) = daemonset["spec"]["template"]["spec"]["initContainers"]
    script = init["command"][-1]
    proc = unpack(script, config, tmp_path / "good")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "good/artifact/fw.o").read_bytes() == artifact
    tampered = copy.deepcopy(config)
    tampered["data"]["fw.o.sha256"] = "0" * 64 + "  fw.o\n"
    assert unpack(script, tampered, tmp_path / "bad").returncode != 0


def test_alert_rules_pass_promtool_and_cover_the_failures(tmp_path: Path) -> None:
    (rule,) = by_kind(manifests(KUBE / "base"), "PrometheusRule")
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    proc = subprocess.run(
        ["promtool", "check", "rules", str(rules_file)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    alerts = {r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]}
    assert {
        "FwcPolicyNotApplied",
        "FwcPolicyDigestDiffers",
        "FwcMapNearlyFull",
        "FwcRuleDropsSpiking",
        "FwcDaemonRestarting",
    } <= alerts
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        yaml.safe_dump(
            {"groups": [{"name": "x", "rules": [{"alert": "A", "expr": "rate(up[5m]"}]}]}
        )
    )
    assert subprocess.run(["promtool", "check", "rules", str(bad)], capture_output=True).returncode


def known_metrics() -> set[str]:
    """Metric families the loader defines today (counters exposed with `_total`)."""
    names: set[str] = set()
    for path in (REPO / "loader/daemon").glob("*.py"):
        text = path.read_text()
        for kind, name in re.findall(r"(\w+)MetricFamily\(\s*\"(fwc_\w+)\"", text):
            names.add(name + "_total" if kind == "Counter" else name)
            if kind == "Info":
                names.add(name + "_info")
    return names


def queried(expr: str) -> set[str]:
    """Metric names in a PromQL expression (not labels, functions or keywords)."""
    without_strings = re.sub(r'"[^"]*"', '""', expr)
    without_labels = re.sub(r"\{[^}]*\}", "", without_strings)
    without_groupings = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", without_labels)
    words = set(re.findall(r"\b[a-z_][a-z0-9_]*\b(?!\s*\()", without_groupings))
    names = words - {"offset", "and", "or", "unless", "bool", "m", "h", "s"}
    return {re.sub(r"_(sum|count|bucket)$", "", n) for n in names}


def test_dashboard_and_alerts_query_metrics_that_exist() -> None:
    exist = known_metrics()
    assert {"fwc_interface_attached", "fwc_packets_total"} <= exist
    known = exist | CONTRACT_METRICS | OTHER_METRICS
    dashboard = json.loads((KUBE / "base/grafana/fwc-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    (rule,) = by_kind(manifests(KUBE / "base"), "PrometheusRule")
    exprs += [r["expr"] for g in rule["spec"]["groups"] for r in g["rules"]]
    for expr in exprs:
        names = queried(expr)
        assert names and names <= known, (expr, names - known)
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])


def test_containerfile_builds_the_node_image_from_this_repository() -> None:
    text = (REPO / "deploy/Containerfile").read_text()
    stages = re.findall(r"^FROM (\S+)", text, re.M)
    assert len(stages) == 2 and all(":" in s for s in stages)
    for source in re.findall(r"^COPY (?!--from)(\S+)", text, re.M):
        assert (REPO / source).exists(), source
    entry = json.loads(re.search(r"^ENTRYPOINT (.*)$", text, re.M).group(1))  # type: ignore[union-attr]
    cmd = json.loads(re.search(r"^CMD (.*)$", text, re.M).group(1))  # type: ignore[union-attr]
    assert entry + cmd == [
        "fw-load",
        "run",
        "--watch",
        "/etc/fwc/artifact/fw.o",
        "--metrics-addr",
        "0.0.0.0:9469",
    ]


# promtool unit tests of the alerts: series in, which alerts fire when (with the summary;
# the description is the rule's own).
UP = 'up{job="fwc-system/fw-load", namespace="fwc-system", node="n%s", pod="%s"}'
ALERT_TESTS: list[dict[str, Any]] = [
    {
        "input_series": [
            {"series": UP % ("1", "a"), "values": "1x20"},
            {"series": UP % ("2", "b"), "values": "1x20"},
            {
                "series": 'fwc_interface_attached{namespace="fwc-system", node="n1", pod="a", '
                'interface="eth0"}',
                "values": "1x20",
            },
        ],
        "alert_rule_test": [
            {"eval_time": "3m", "alertname": "FwcPolicyNotApplied", "exp_alerts": []},
            {
                "eval_time": "10m",
                "alertname": "FwcPolicyNotApplied",
                "exp_alerts": [
                    {
                        "exp_labels": {
                            "severity": "critical",
                            "job": "fwc-system/fw-load",
                            "namespace": "fwc-system",
                            "node": "n2",
                            "pod": "b",
                        },
                        "summary": "fw-load on n2 has no policy attached",
                    }
                ],
            },
        ],
    },
    {
        "input_series": [
            {"series": 'fwc_policy_info{pod="a", sha256="d1"}', "values": "1x60"},
            {"series": 'fwc_policy_info{pod="b", sha256="d1"}', "values": "1x10 _x50"},
            {"series": 'fwc_policy_info{pod="b", sha256="d2"}', "values": "_x10 1x50"},
        ],
        "alert_rule_test": [
            # a rollout in progress is not an alert; one stuck for 30 minutes is
            {"eval_time": "20m", "alertname": "FwcPolicyDigestDiffers", "exp_alerts": []},
            {
                "eval_time": "45m",
                "alertname": "FwcPolicyDigestDiffers",
                "exp_alerts": [
                    {
                        "exp_labels": {"severity": "warning"},
                        "summary": "2 different policy digests run across the fleet",
                    }
                ],
            },
        ],
    },
    {
        "input_series": [
            {
                "series": 'fwc_map_entries{node="n1", pod="a", policy="p", map="rl"}',
                "values": "850x20",
            },
            {
                "series": 'fwc_map_capacity{node="n1", pod="a", policy="p", map="rl"}',
                "values": "1000x20",
            },
            {
                "series": 'fwc_map_entries{node="n1", pod="a", policy="p", map="ok"}',
                "values": "700x20",
            },
            {
                "series": 'fwc_map_capacity{node="n1", pod="a", policy="p", map="ok"}',
                "values": "1000x20",
            },
        ],
        "alert_rule_test": [
            {
                "eval_time": "15m",
                "alertname": "FwcMapNearlyFull",
                "exp_alerts": [
                    {
                        "exp_labels": {
                            "severity": "warning",
                            "node": "n1",
                            "pod": "a",
                            "policy": "p",
                            "map": "rl",
                        },
                        "summary": "map rl of policy p on n1 is 85% full",
                    }
                ],
            }
        ],
    },
    {
        "input_series": [
            # 60 drops a second for 70 minutes, then 600 a second
            {
                "series": 'fwc_rule_packets_total{policy="p", rule="r", action="deny"}',
                "values": "0+3600x70 252000+36000x20",
            },
        ],
        "alert_rule_test": [
            {"eval_time": "65m", "alertname": "FwcRuleDropsSpiking", "exp_alerts": []},
            {
                "eval_time": "85m",
                "alertname": "FwcRuleDropsSpiking",
                "exp_alerts": [
                    {
                        "exp_labels": {"severity": "warning", "policy": "p", "rule": "r"},
                        "summary": "rule r of p drops 600 packets/s",
                    }
                ],
            },
        ],
    },
    {
        "input_series": [
            {
                "series": 'kube_pod_container_status_restarts_total{namespace="fwc-system", '
                'pod="a", container="fw-load"}',
                "values": "0 0 1 2 3 4 5 5 5 5 5",
            },
        ],
        "alert_rule_test": [
            {
                "eval_time": "10m",
                "alertname": "FwcDaemonRestarting",
                "exp_alerts": [
                    {
                        "exp_labels": {
                            "severity": "warning",
                            "namespace": "fwc-system",
                            "pod": "a",
                            "container": "fw-load",
                        },
                        "summary": "fw-load restarted 5 times in 15 minutes on pod a",
                    }
                ],
            }
        ],
    },
]


def promtool_tests(rules: dict[str, Any]) -> list[dict[str, Any]]:
    """ALERT_TESTS as promtool wants them: each expected alert's annotations in full."""
    descriptions = {r["alert"]: r["annotations"]["description"] for g in rules for r in g["rules"]}
    tests = copy.deepcopy(ALERT_TESTS)
    for test in tests:
        test["interval"] = "1m"
        for case in test["alert_rule_test"]:
            for alert in case["exp_alerts"]:
                alert["exp_annotations"] = {
                    "summary": alert.pop("summary"),
                    "description": descriptions[case["alertname"]],
                }
    return tests


def test_alerts_fire_when_they_should(tmp_path: Path) -> None:
    (rule,) = by_kind(manifests(KUBE / "base"), "PrometheusRule")
    groups = rule["spec"]["groups"]
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": groups}))
    tests = {"rule_files": ["rules.yaml"], "evaluation_interval": "1m"}
    tests["tests"] = promtool_tests(groups)
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(tests, sort_keys=False))
    proc = subprocess.run(
        ["promtool", "test", "rules", "tests.yaml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
