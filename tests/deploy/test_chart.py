"""The Helm chart, rendered and linted by Helm itself (its Go SDK, through the
helm-python-sdk wheel: no helm binary, no cluster), against the Python renderer."""

from __future__ import annotations

import base64
import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from fedpilot.deploy import chart_values, render_manifests
from fedpilot.deploy._plan import app_version
from fedpilot.spec import FederationSpec, validate_spec

helm = pytest.importorskip(
    "helm_python", reason="helm-python-sdk (a dev dependency) renders the chart"
)

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "fedpilot"
Objects = list[dict[str, Any]]

# Options both the chart (through chart_values) and render_manifests take.
VARIANTS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "own-images-release-namespace": {
        "image": "registry.example/fedpilot:1.2",
        "learner_image": "registry.example/fedpilot-learner:1.2-cuda",
        "release": "digits",
        "namespace": "federation",
        "mlflow_uri": "http://mlflow.mlops:5000",
        "tls_secret": "my-tls",
        "keys_secret": "my-keys",
    },
    "gpus-no-persistence-data-file": {
        "learners": 5,
        "learner_gpus": 2,
        "runs_storage": None,
        "storage_class": "fast-ssd",
        "learner_data": "/var/lib/fedpilot/data/learner.npz",
        "service_type": "LoadBalancer",
    },
}


def render_chart(
    values: dict[str, Any] | None = None, *, release: str = "fedpilot", namespace: str = "default"
) -> Objects:
    with helm.Chart.load(str(CHART)) as chart:
        manifests = chart.render(values or {}, name=release, namespace=namespace)
    objects = []
    for path, text in sorted(manifests.items()):
        if path.endswith(".yaml"):
            objects += [doc for doc in yaml.safe_load_all(text) if doc is not None]
    return objects


def normalized(objects: Objects) -> dict[tuple[str, str], dict[str, Any]]:
    """Keyed by kind and name, Helm's own labels made the renderer's."""
    result = {}
    for obj in copy.deepcopy(objects):
        metas = [obj["metadata"]]
        template = obj.get("spec", {}).get("template")
        if template is not None:
            metas.append(template["metadata"])
        for meta in metas:
            labels = meta.get("labels", {})
            labels.pop("helm.sh/chart", None)
            if labels.get("app.kubernetes.io/managed-by") == "Helm":
                labels["app.kubernetes.io/managed-by"] = "fedpilot"
        result[(obj["kind"], obj["metadata"]["name"])] = obj
    return result


def test_helm_lint_passes_strict() -> None:
    for kube in ("v1.28.0", "v1.30.0"):
        report = helm.lint(str(CHART), strict=True, kube_version=kube)
        problems = [m for m in report["messages"] if m["severity"] >= 2]
        assert not report["errors"] and not problems, report


def test_chart_metadata_matches_the_package() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2" and chart["name"] == "fedpilot"
    assert chart["appVersion"] == app_version()
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["image"]["server"].endswith(f":{app_version()}")
    assert values["image"]["learner"].endswith(f":{app_version()}")


def test_default_values_render_valid_objects(k8s_valid: Callable[[Objects], None]) -> None:
    objects = render_chart()
    assert {o["kind"] for o in objects} == {
        "ConfigMap", "PersistentVolumeClaim", "Service", "Deployment", "StatefulSet",
    }  # fmt: skip
    k8s_valid(objects)


def test_default_spec_in_values_is_a_valid_flower_spec() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    spec = validate_spec(yaml.safe_load(values["spec"]))
    assert spec.runtime.mode == "flower"


@pytest.mark.parametrize("variant", VARIANTS)
def test_chart_renders_exactly_what_the_renderer_does(
    flower_spec: FederationSpec, variant: str, k8s_valid: Callable[[Objects], None]
) -> None:
    options = dict(VARIANTS[variant])
    namespace = options.pop("namespace", "default")
    release = options.get("release", "fedpilot")
    from_chart = render_chart(
        chart_values(flower_spec, **options), release=release, namespace=namespace
    )
    k8s_valid(from_chart)
    expected = render_manifests(flower_spec, namespace=namespace, **options)
    assert normalized(from_chart) == normalized(expected)


def test_chart_defaults_are_the_renderers_defaults(flower_spec: FederationSpec) -> None:
    # The chart's own values.yaml (its spec kept verbatim) against render_manifests of that
    # spec: equal but for the spec text, which the renderer writes out resolved.
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    spec = validate_spec(yaml.safe_load(values["spec"]))
    from_chart = normalized(render_chart())
    expected = normalized(render_manifests(spec))
    for objects in (from_chart, expected):
        objects[("ConfigMap", "fedpilot-spec")]["data"] = {}
        deployment = objects[("Deployment", "fedpilot-server")]
        deployment["spec"]["template"]["metadata"]["annotations"] = {}
    assert from_chart == expected


@pytest.mark.parametrize(
    ("spec_change", "values", "message"),
    [
        ({"runtime": {"mode": "local"}}, {}, "runtime.mode must be flower"),
        ({"runtime": {"mode": "flower", "superlink": "x:1"}}, {}, "runtime.superlink"),
        ({"runtime": {"mode": "flower", "listen": "127.0.0.1:8000"}}, {}, "loopback"),
        ({}, {"learners": {"replicas": 2}}, "at least 3 learners"),
    ],
)
def test_chart_refuses_what_the_renderer_refuses(
    flower_spec: FederationSpec, spec_change: dict[str, Any], values: dict[str, Any], message: str
) -> None:
    raw = yaml.safe_load(chart_values(flower_spec)["spec"])
    raw.update(spec_change)
    with pytest.raises(helm.HelmError, match=message):
        render_chart({"spec": yaml.safe_dump(raw), **values})


def test_secrets_made_from_values_are_valid_and_used(
    flower_spec: FederationSpec, k8s_valid: Callable[[Objects], None]
) -> None:
    values = chart_values(flower_spec)
    values["tls"] = {"create": True, "caCrt": "CA", "serverPem": "CERT", "serverKey": "KEY"}
    values["learnerKeys"] = {
        "create": True,
        "files": {"authorized_learners.yaml": "learners: []\n", "learner-0.key": "K0"},
    }
    objects = render_chart(values)
    k8s_valid(objects)
    secrets = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Secret"}
    assert set(secrets) == {"fedpilot-tls", "fedpilot-learner-keys"}
    tls = {k: base64.b64decode(v).decode() for k, v in secrets["fedpilot-tls"]["data"].items()}
    assert tls == {"ca.crt": "CA", "server.pem": "CERT", "server.key": "KEY"}
    text = yaml.safe_dump_all([o for o in objects if o["kind"] != "Secret"])
    assert "secretName: fedpilot-tls" in text and "secretName: fedpilot-learner-keys" in text


def test_values_schema_accepts_rendered_values_and_rejects_mistakes(
    flower_spec: FederationSpec,
) -> None:
    with helm.Chart.load(str(CHART)) as chart:
        for options in VARIANTS.values():
            kube = {k: v for k, v in options.items() if k != "namespace"}
            chart.validate_schema(chart_values(flower_spec, **kube))
        for mistake in (
            {"learners": {"replicas": 0}},
            {"server": {"service": {"type": "Ingress"}}},
            {"learner": {"replicas": 3}},  # a typo of `learners`
        ):
            with pytest.raises(helm.HelmError):
                chart.validate_schema(mistake)
