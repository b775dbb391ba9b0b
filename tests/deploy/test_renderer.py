"""fedpilot.deploy.render_manifests: schema-valid objects that run what the spec says."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from fedpilot.deploy import render_manifests
from fedpilot.deploy._plan import LEARNER_COMMAND, SERVER_COMMAND
from fedpilot.errors import UserError
from fedpilot.spec import FederationSpec, load_spec
from fedpilot.spec.model import FederationSpec as Model

ROOT = Path(__file__).resolve().parents[2]
Objects = list[dict[str, Any]]

VARIANTS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "own-images-and-namespace": {
        "image": "registry.example/fedpilot:1.2",
        "learner_image": "registry.example/fedpilot-learner:1.2-cuda",
        "namespace": "federation",
        "release": "digits",
        "mlflow_uri": "http://mlflow.mlops:5000",
    },
    "gpus-no-persistence-data-file": {
        "learner_gpus": 1,
        "runs_storage": None,
        "storage_class": "fast-ssd",
        "learner_data": "/var/lib/fedpilot/data/learner.npz",
        "service_type": "LoadBalancer",
    },
}


def by_kind(objects: Objects) -> dict[str, dict[str, Any]]:
    return {f"{o['kind']}/{o['metadata']['name'].split('-')[-1]}": o for o in objects}


def container(obj: dict[str, Any]) -> dict[str, Any]:
    containers = obj["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    result: dict[str, Any] = containers[0]
    return result


def with_runtime(spec: FederationSpec, **runtime: Any) -> FederationSpec:
    raw = spec.model_dump(mode="json")
    raw["runtime"].update(runtime)
    return Model.model_validate(raw)


@pytest.mark.parametrize("variant", VARIANTS)
def test_objects_are_valid_kubernetes(
    flower_spec: FederationSpec, variant: str, k8s_valid: Callable[[Objects], None]
) -> None:
    k8s_valid(render_manifests(flower_spec, **VARIANTS[variant]))


def test_insecure_spec_without_auth_is_valid_and_mounts_no_secret(
    flower_spec: FederationSpec, k8s_valid: Callable[[Objects], None]
) -> None:
    spec = with_runtime(flower_spec, insecure=True, authorized_learners=None, certificates=None)
    objects = render_manifests(spec)
    k8s_valid(objects)
    text = yaml.safe_dump_all(objects)
    assert "secretName" not in text
    server = container(by_kind(objects)["Deployment/server"])
    assert server["readinessProbe"]["httpGet"]["scheme"] == "HTTP"
    learner = container(by_kind(objects)["StatefulSet/learner"])
    assert "--insecure" in learner["args"] and "--ca" not in learner["args"]
    assert "--key" not in learner["args"]


def test_the_expected_objects_in_apply_order(flower_spec: FederationSpec) -> None:
    objects = render_manifests(flower_spec, release="fp", namespace="ns")
    assert [(o["kind"], o["metadata"]["name"]) for o in objects] == [
        ("ConfigMap", "fp-spec"),
        ("PersistentVolumeClaim", "fp-runs"),
        ("Service", "fp-server"),
        ("Service", "fp-learners"),
        ("Deployment", "fp-server"),
        ("StatefulSet", "fp-learner"),
    ]
    assert {o["metadata"]["namespace"] for o in objects} == {"ns"}
    service = by_kind(objects)["Service/server"]
    assert service["spec"]["ports"][0]["port"] == 8000
    assert by_kind(objects)["StatefulSet/learner"]["spec"]["serviceName"] == "fp-learners"


def test_no_secret_objects_and_no_key_material(flower_spec: FederationSpec) -> None:
    objects = render_manifests(flower_spec)
    assert "Secret" not in {o["kind"] for o in objects}
    text = yaml.safe_dump_all(objects)
    assert "PRIVATE KEY" not in text and "BEGIN" not in text
    secret_names = set(re.findall(r"secretName: (\S+)", text))
    assert secret_names == {"fedpilot-tls", "fedpilot-learner-keys"}


def test_learners_default_to_the_specs_num_learners(flower_spec: FederationSpec) -> None:
    stateful_set = by_kind(render_manifests(flower_spec))["StatefulSet/learner"]
    assert stateful_set["spec"]["replicas"] == flower_spec.data.num_learners == 3
    stateful_set = by_kind(render_manifests(flower_spec, learners=7))["StatefulSet/learner"]
    assert stateful_set["spec"]["replicas"] == 7
    assert "$(FEDPILOT_LEARNER_INDEX)/7" in container(stateful_set)["args"]


@pytest.mark.parametrize("learners", [3, 8])
def test_each_pod_serves_its_own_partition(
    flower_spec: FederationSpec, learners: int, parse_cli: Callable[[list[str]], dict[str, Any]]
) -> None:
    learner = container(
        by_kind(render_manifests(flower_spec, learners=learners))["StatefulSet/learner"]
    )
    env = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in learner["env"]}
    assert env == {"FEDPILOT_LEARNER_INDEX": "metadata.labels['apps.kubernetes.io/pod-index']"}
    partitions, keys = set(), set()
    for ordinal in range(learners):
        # What the kubelet does with $(VAR) in args, for the pod with this ordinal.
        args = [a.replace("$(FEDPILOT_LEARNER_INDEX)", str(ordinal)) for a in learner["args"]]
        params = parse_cli([learner["command"][-1], *args])
        partitions.add(params["partition"])
        keys.add(str(params["key"]))
        assert params["server"] == "fedpilot-server:8000"
        assert str(params["ca"]) == "/etc/fedpilot/tls/ca.crt"
    assert partitions == {f"{i}/{learners}" for i in range(learners)}
    assert keys == {f"/etc/fedpilot/keys/learner-{i}.key" for i in range(learners)}


def test_server_args_parse_with_the_real_cli(
    flower_spec: FederationSpec, parse_cli: Callable[[list[str]], dict[str, Any]]
) -> None:
    server = container(
        by_kind(render_manifests(flower_spec, mlflow_uri="http://m:5000"))["Deployment/server"]
    )
    assert server["command"] == list(SERVER_COMMAND)
    params = parse_cli([server["command"][-1], *server["args"]])
    assert str(params["spec_file"]) == "/etc/fedpilot/spec/spec.yaml"
    assert str(params["output_dir"]) == "/var/lib/fedpilot/runs"
    assert set(params["overrides"]) == {
        "runtime.certificates=/etc/fedpilot/tls",
        "runtime.authorized_learners=/etc/fedpilot/learners/authorized_learners.yaml",
        "tracking.mlflow_uri=http://m:5000",
    }
    learner = container(by_kind(render_manifests(flower_spec))["StatefulSet/learner"])
    assert learner["command"] == list(LEARNER_COMMAND)


def test_mounts_match_what_the_args_name(flower_spec: FederationSpec) -> None:
    objects = by_kind(render_manifests(flower_spec))
    server = container(objects["Deployment/server"])
    mounts = {m["mountPath"]: m["name"] for m in server["volumeMounts"]}
    assert {"/etc/fedpilot/spec", "/etc/fedpilot/tls", "/etc/fedpilot/learners"} <= set(mounts)
    volumes = {
        v["name"]: v for v in objects["Deployment/server"]["spec"]["template"]["spec"]["volumes"]
    }
    tls_items = [i["key"] for i in volumes["tls"]["secret"]["items"]]
    assert tls_items == ["ca.crt", "server.pem", "server.key"]  # never ca.key
    assert volumes["spec"]["configMap"]["name"] == "fedpilot-spec"
    learner_set = objects["StatefulSet/learner"]
    learner_volumes = {v["name"]: v for v in learner_set["spec"]["template"]["spec"]["volumes"]}
    assert [i["key"] for i in learner_volumes["tls"]["secret"]["items"]] == ["ca.crt"]
    assert learner_set["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"


def test_pods_run_as_the_images_non_root_user(flower_spec: FederationSpec) -> None:
    for obj in render_manifests(flower_spec):
        if obj["kind"] not in ("Deployment", "StatefulSet"):
            continue
        pod = obj["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == 10001
        security = container(obj)["securityContext"]
        assert security["allowPrivilegeEscalation"] is False
        assert security["readOnlyRootFilesystem"] is True


def test_the_config_map_holds_the_spec_the_server_will_load(
    flower_spec: FederationSpec, tmp_path: Path
) -> None:
    config_map = render_manifests(flower_spec)[0]
    path = tmp_path / "spec.yaml"
    path.write_text(config_map["data"]["spec.yaml"])
    loaded = load_spec(path)
    assert loaded.digest() == flower_spec.digest()  # same federation, paths already in place
    raw = yaml.safe_load(path.read_text())
    assert "base_dir" not in raw


def test_digits_example_deploys_with_flower_mode(k8s_valid: Callable[[Objects], None]) -> None:
    spec = load_spec(ROOT / "examples" / "digits.yaml", ["runtime={mode: flower}"])
    objects = render_manifests(spec)
    k8s_valid(objects)
    assert by_kind(objects)["StatefulSet/learner"]["spec"]["replicas"] == 10


@pytest.mark.parametrize(
    ("change", "options", "message"),
    [
        ({"mode": "local"}, {}, "runtime.mode"),
        ({"superlink": "elsewhere:9092"}, {}, "runtime.superlink"),
        ({"listen": "127.0.0.1:8000"}, {}, "runtime.listen"),
        ({}, {"learners": 2}, "at least 3 learners"),
        ({}, {"release": "Not_A_Name"}, "release"),
        ({}, {"release": "x" * 41}, "release"),
        ({}, {"namespace": "-bad"}, "namespace"),
        ({}, {"service_type": "Ingress"}, "service_type"),
    ],
)
def test_undeployable_requests_are_user_errors(
    flower_spec: FederationSpec, change: dict[str, Any], options: dict[str, Any], message: str
) -> None:
    raw = flower_spec.model_dump(mode="json")
    if change.get("mode") == "local":
        raw["runtime"] = {"mode": "local"}
    else:
        raw["runtime"].update(change)
    spec = Model.model_validate(raw)
    with pytest.raises(UserError, match=re.escape(message)):
        render_manifests(spec, **options)
