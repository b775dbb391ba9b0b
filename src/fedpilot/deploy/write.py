"""Writing rendered deployments to a folder, each file headed by how it was made and how
to use it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedpilot.deploy._plan import dump_yaml, dump_yaml_documents
from fedpilot.spec import FederationSpec

K8S_FILE = "kubernetes.yaml"
COMPOSE_FILE = "compose.yaml"
COMPOSE_SPEC_FILE = "spec.yaml"
VALUES_FILE = "values.yaml"


@dataclass(frozen=True)
class Written:
    """A file written and what it holds, for the command to print."""

    path: Path
    what: str


def _header(spec: FederationSpec, *lines: str) -> str:
    made = f"Rendered by `fedpilot deploy render` from spec {spec.name!r} ({spec.digest()})."
    return "".join(f"# {line}\n" for line in (made, *lines))


def write_kubernetes(spec: FederationSpec, objects: list[dict[str, Any]], out: Path) -> Written:
    """All objects as one multi-document YAML file, in the order to apply them."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / K8S_FILE
    header = _header(
        spec,
        f"Apply: kubectl apply -f {K8S_FILE} (after creating the Secrets it names,",
        "see deploy/README.md).",
    )
    path.write_text(header + "---\n" + dump_yaml_documents(objects))
    kinds = ", ".join(f"{o['kind']}/{o['metadata']['name']}" for o in objects)
    return Written(path, f"{len(objects)} Kubernetes objects: {kinds}")


def write_compose(
    spec: FederationSpec, compose: dict[str, Any], spec_text: str, out: Path
) -> list[Written]:
    """The Compose file and, beside it, the spec file its server mounts."""
    out.mkdir(parents=True, exist_ok=True)
    spec_path = out / COMPOSE_SPEC_FILE
    spec_path.write_text(_header(spec, "The spec the server container reads.") + spec_text)
    path = out / COMPOSE_FILE
    header = _header(spec, f"Start: docker compose -f {COMPOSE_FILE} up -d")
    path.write_text(header + dump_yaml(compose))
    services = ", ".join(compose["services"])
    return [
        Written(path, f"Compose project: {services}"),
        Written(spec_path, "the spec the server mounts"),
    ]


def write_values(spec: FederationSpec, values: dict[str, Any], out: Path) -> Written:
    """Values for the Helm chart in deploy/helm/fedpilot."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / VALUES_FILE
    header = _header(spec, f"Install: helm install fedpilot deploy/helm/fedpilot -f {VALUES_FILE}")
    path.write_text(header + dump_yaml(values))
    return Written(path, "Helm values for deploy/helm/fedpilot")
