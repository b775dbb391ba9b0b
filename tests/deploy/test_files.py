"""Every file under deploy/ is well-formed, and the docs name what users must run."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
TEMPLATES = DEPLOY / "helm" / "fedpilot" / "templates"


def test_every_yaml_file_under_deploy_parses() -> None:
    files = [
        p for p in sorted(DEPLOY.rglob("*.y*ml")) if TEMPLATES not in p.parents
    ]  # Helm templates are Go templates: test_chart.py renders them with Helm.
    assert {p.name for p in files} >= {
        "compose.yaml",
        "Chart.yaml",
        "values.yaml",
        ".hadolint.yaml",
    }
    for path in files:
        documents = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
        assert documents, path
        assert all(isinstance(d, dict) for d in documents), path
    example = ROOT / "examples" / "deploy" / "flower-digits.yaml"
    assert isinstance(yaml.safe_load(example.read_text()), dict)


def test_every_json_file_under_deploy_parses() -> None:
    files = sorted(DEPLOY.rglob("*.json"))
    assert files
    for path in files:
        assert isinstance(json.loads(path.read_text()), dict), path


def test_readme_covers_build_compose_helm_and_secrets() -> None:
    readme = (DEPLOY / "README.md").read_text()
    for needle in (
        "docker build -f deploy/docker/Dockerfile.server",
        "docker build -f deploy/docker/Dockerfile.learner",
        "VARIANT=cuda",
        "docker compose -f deploy/compose.yaml up",
        "helm install",
        "fedpilot certs init",
        "fedpilot learners keygen",
        "fedpilot deploy render",
        "kubectl create secret generic fedpilot-tls",
    ):
        assert needle in readme, needle
