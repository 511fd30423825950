"""The deployment files, checked by machine: the Kubernetes manifests against the API's own
schemas (``kubernetes-validate``, strict: an unknown field is an error) and against each other
(selectors, probe ports, settings), and ``docker-compose.yml`` against the Compose
specification's JSON Schema."""

from __future__ import annotations

import json
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from jsonschema import Draft201909Validator

from streams.settings import Settings
from tests.tools.fetch_specs import COMPOSE

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = sorted((ROOT / "deploy" / "kubernetes").glob("*.yaml"))
K8S = "1.33.0"


def documents() -> list[dict]:
    docs = [d for path in MANIFESTS for d in yaml.safe_load_all(path.read_text()) if d]
    assert docs, "no manifests in deploy/kubernetes"
    return docs


def by_kind(kind: str) -> list[dict]:
    return [d for d in documents() if d["kind"] == kind]


@pytest.mark.parametrize("doc", documents(), ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_every_manifest_is_valid_for_the_kubernetes_api(doc):
    kubernetes_validate.validate(doc, K8S, strict=True)


def test_a_misspelt_field_would_be_caught():
    doc = json.loads(json.dumps(by_kind("Deployment")[0]))
    doc["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, K8S, strict=True)


def pods() -> list[dict]:
    return [d for d in documents() if d["kind"] in ("Deployment", "StatefulSet")]


def test_services_and_budgets_select_pods_that_exist():
    labels = [p["spec"]["template"]["metadata"]["labels"] for p in pods()]
    for doc in by_kind("Service") + by_kind("PodDisruptionBudget"):
        sel = doc["spec"]["selector"]
        sel = sel.get("matchLabels", sel)
        assert any(sel.items() <= lab.items() for lab in labels), doc["metadata"]["name"]
    for p in pods():
        assert p["spec"]["selector"]["matchLabels"].items() <= \
            p["spec"]["template"]["metadata"]["labels"].items()
    names = {s["metadata"]["name"] for s in by_kind("Service")}
    assert all(s["spec"]["serviceName"] in names for s in by_kind("StatefulSet"))


def test_probes_and_scrapes_point_at_ports_the_containers_open():
    for p in pods():
        spec = p["spec"]["template"]
        for c in spec["spec"]["containers"]:
            ports = {port["name"]: port["containerPort"] for port in c["ports"]}
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                if probe in c:
                    assert c[probe]["httpGet"]["port"] in ports, (c["name"], probe)
            assert int(spec["metadata"]["annotations"]["prometheus.io/port"]) in ports.values()
        mounts = {m["name"] for c in spec["spec"]["containers"] for m in c.get("volumeMounts", [])}
        claims = {v["metadata"]["name"] for v in p["spec"].get("volumeClaimTemplates", [])}
        assert mounts <= claims


def test_the_settings_are_funnel_settings_and_the_ports_agree():
    config = by_kind("ConfigMap")[0]["data"] | by_kind("Secret")[0]["stringData"]
    known = {f"FUNNEL_{name.upper()}" for name in Settings.model_fields}
    assert set(config) <= known, set(config) - known
    settings = Settings(**{k.removeprefix("FUNNEL_").lower(): v for k, v in config.items()})
    (worker,) = by_kind("StatefulSet")
    (collector,) = by_kind("Deployment")
    port = lambda p: p["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"]
    assert port(worker) == settings.worker_port and port(collector) == settings.http_port
    assert settings.http_host == "0.0.0.0"   # reachable by probes from outside the pod
    mount = worker["spec"]["template"]["spec"]["containers"][0]["volumeMounts"][0]["mountPath"]
    assert str(settings.data_dir) == mount


def test_docker_compose_follows_the_compose_specification():
    assert COMPOSE.target.exists(), f"{COMPOSE.target} is missing: run 'make test' (it fetches it)"
    validator = Draft201909Validator(json.loads(COMPOSE.target.read_text()))
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert list(validator.iter_errors(compose)) == []
    compose["services"]["worker"]["restart_policy"] = "always"   # not a Compose key
    assert list(validator.iter_errors(compose))
