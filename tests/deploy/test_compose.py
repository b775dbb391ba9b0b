"""deploy/compose.yaml and fedpilot.deploy.render_compose, checked without Docker."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from fedpilot.deploy import render_compose
from fedpilot.deploy._plan import LEARNER_COMMAND, SERVER_COMMAND, dump_yaml
from fedpilot.spec import FederationSpec, load_spec

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
SPEC = ROOT / "examples" / "deploy" / "flower-digits.yaml"
# How deploy/compose.yaml is made from the example spec (paths relative to deploy/).
SHIPPED: dict[str, Any] = {
    "spec_file": "../examples/deploy/flower-digits.yaml",
    "secrets_dir": "./secrets",
    "build_context": "..",
}
HEADER = """\
# fedpilot on one Docker host: the federation of examples/deploy/flower-digits.yaml with a
# server, three learners (partitions 0/3, 1/3 and 2/3) and an MLflow tracking server.
#
# First create the certificates and learner keys (deploy/secrets/README.md):
#   fedpilot certs init deploy/secrets/tls --host server
#   for i in 0 1 2; do fedpilot learners keygen deploy/secrets/keys --name learner-$i; done
#   sudo chown -R 10001:10001 deploy/secrets/tls deploy/secrets/keys
# Then:  docker compose -f deploy/compose.yaml up --build
# MLflow: http://localhost:5000 · the server: docker compose -f deploy/compose.yaml logs -f server
#
# Made by fedpilot.deploy.render_compose from that spec; tests/deploy/test_compose.py checks
# it is current (FEDPILOT_REGENERATE=1 pytest tests/deploy/test_compose.py rewrites it).
"""


def shipped() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def test_shipped_compose_is_what_the_renderer_makes() -> None:
    expected = render_compose(load_spec(SPEC), **SHIPPED)
    if os.environ.get("FEDPILOT_REGENERATE"):
        COMPOSE.write_text(HEADER + dump_yaml(expected))
    assert shipped() == expected, "deploy/compose.yaml is stale: regenerate it (see its header)"


def test_services_server_mlflow_and_three_learners() -> None:
    services = shipped()["services"]
    assert set(services) == {"server", "mlflow", "learner-0", "learner-1", "learner-2"}
    assert services["mlflow"]["image"].startswith("ghcr.io/mlflow/mlflow:")
    command = " ".join(services["mlflow"]["command"])
    assert "--backend-store-uri sqlite:////mlflow/" in command
    assert "mlflow-data:/mlflow" in services["mlflow"]["volumes"]
    server = services["server"]
    assert server["entrypoint"] == list(SERVER_COMMAND)
    assert "tracking.mlflow_uri=http://mlflow:5000" in server["command"]
    assert server["depends_on"] == {"mlflow": {"condition": "service_healthy"}}
    spec_mount = server["volumes"][0]
    assert spec_mount["read_only"] is True and spec_mount["source"].startswith("../examples/")
    for name in ("learner-0", "learner-1", "learner-2"):
        assert services[name]["entrypoint"] == list(LEARNER_COMMAND)
        assert services[name]["depends_on"] == {"server": {"condition": "service_healthy"}}


def test_learner_partitions_are_distinct_and_cover_all(
    parse_cli: Callable[[list[str]], dict[str, Any]],
) -> None:
    services = shipped()["services"]
    learners = sorted(name for name in services if name.startswith("learner-"))
    partitions = set()
    for name in learners:
        params = parse_cli(["learner", *services[name]["command"]])
        partitions.add(params["partition"])
        assert params["server"] == "server:8000" and params["name"] == name
        assert str(params["key"]) == f"/etc/fedpilot/keys/{name}.key"
    assert partitions == {f"{i}/{len(learners)}" for i in range(len(learners))}


def test_server_command_parses_with_the_real_cli(
    parse_cli: Callable[[list[str]], dict[str, Any]],
) -> None:
    server = shipped()["services"]["server"]
    params = parse_cli(["server", *server["command"]])
    assert str(params["spec_file"]) == "/etc/fedpilot/spec/spec.yaml"
    assert server["volumes"][0]["target"] == "/etc/fedpilot/spec/spec.yaml"


def test_references_resolve() -> None:
    compose = shipped()
    services, volumes, secrets = compose["services"], compose["volumes"], compose["secrets"]
    for name, service in services.items():
        for target in service.get("depends_on", {}):
            assert target in services, f"{name} depends on unknown {target}"
        for volume in service.get("volumes", []):
            if isinstance(volume, str):
                assert volume.split(":")[0] in volumes, f"{name}: undeclared volume {volume}"
        for secret in service.get("secrets", []):
            assert secret["source"] in secrets, f"{name}: undeclared secret {secret}"
            assert secret["target"].startswith("/etc/fedpilot/")


def test_every_host_path_exists_or_is_documented_under_deploy_secrets() -> None:
    compose = shipped()
    documented = (DEPLOY / "secrets" / "README.md").read_text()
    host_paths = [s["file"] for s in compose["secrets"].values()]
    for service in compose["services"].values():
        host_paths += [v["source"] for v in service.get("volumes", []) if isinstance(v, dict)]
        build = service.get("build")
        if build:
            assert (DEPLOY / build["context"] / build["dockerfile"]).is_file()
    assert host_paths
    for host_path in host_paths:
        path = (DEPLOY / host_path).resolve()
        if path.exists():
            continue
        relative = path.relative_to(DEPLOY / "secrets").as_posix()  # else: not documented
        assert f"`{relative}`" in documented or re.sub(r"\d+", "<i>", relative) in documented, (
            f"{host_path} is neither in the repository nor in deploy/secrets/README.md"
        )
    ignore = (DEPLOY / "secrets" / ".gitignore").read_text().split()
    assert "*" in ignore and "!README.md" in ignore


def test_compose_spec_library_accepts_it() -> None:
    compose_spec = pytest.importorskip("compose_spec", reason="compose-spec is a dev dependency")
    project = compose_spec.PyCompose.from_yaml(COMPOSE.read_text())
    project.validate()
    assert set(project.service_names()) == set(shipped()["services"])


def test_tracking_off_means_no_mlflow_and_insecure_means_no_tls(
    flower_spec: FederationSpec,
) -> None:
    raw = flower_spec.model_dump(mode="json")
    raw["tracking"]["enabled"] = False
    raw["runtime"].update(insecure=True, authorized_learners=None, min_learners_to_start=None)
    compose = render_compose(FederationSpec.model_validate(raw), learners=2)
    assert set(compose["services"]) == {"server", "learner-0", "learner-1"}
    assert "secrets" not in compose
    assert "--insecure" in compose["services"]["learner-1"]["command"]
    test = compose["services"]["server"]["healthcheck"]["test"]
    assert test[-1] == "http://127.0.0.1:8000/health"
