"""A Docker Compose project for a spec: server, one service per learner, MLflow.

deploy/compose.yaml is this module's output for examples/deploy/flower-digits.yaml (a test
keeps it so). Certificates and learner keys are Compose secrets read from files that
`fedpilot certs init` and `fedpilot learners keygen` write (deploy/secrets/README.md).
"""

from __future__ import annotations

from typing import Any

from fedpilot.deploy._plan import (
    ALLOW_LIST,
    ALLOW_LIST_DIR,
    HOME,
    KEYS_DIR,
    LEARNER_COMMAND,
    SERVER_COMMAND,
    SPEC_FILE,
    TLS_DIR,
    Plan,
    default_images,
    plan,
)
from fedpilot.spec import FederationSpec

MLFLOW_IMAGE = "ghcr.io/mlflow/mlflow:v3.17.2"
MLFLOW_PORT = 5000
MLFLOW_URI = f"http://mlflow:{MLFLOW_PORT}"
SERVER_SERVICE = "server"

# Containers run as the image's non-root user with a read-only root filesystem; what
# they write goes to their volume (/var/lib/fedpilot) or a tmpfs.
_HARDENED: dict[str, Any] = {
    "read_only": True,
    "tmpfs": ["/tmp"],
    "cap_drop": ["ALL"],
    "security_opt": ["no-new-privileges:true"],
}


def render_compose(
    spec: FederationSpec,
    *,
    image: str | None = None,
    learner_image: str | None = None,
    learners: int | None = None,
    mlflow_uri: str | None = None,
    spec_file: str = "./spec.yaml",
    secrets_dir: str = "./secrets",
    build_context: str | None = None,
    variant: str = "cpu",
    mlflow_image: str = MLFLOW_IMAGE,
) -> dict[str, Any]:
    """The Compose file (as data) that runs ``spec`` on one Docker host.

    Args:
        spec: a ``runtime.mode: flower`` spec.
        image: the fedpilot image for the server and (unless ``learner_image``) learners.
        learners: learner services; learner ``i`` serves partition ``i/learners``.
        mlflow_uri: an MLflow server to track to; default: an ``mlflow`` service in the
            project (when the spec's tracking is enabled).
        spec_file: the spec on the host, relative to the Compose file; mounted read-only.
        secrets_dir: the folder holding ``tls/`` and ``keys/``, relative to the file.
        build_context: the repository, relative to the file, to build the images from;
            ``None``: use the images as they are.
        variant: ``cpu`` or ``cuda`` (the images' build argument ``VARIANT``).
        mlflow_image: the MLflow server image.

    Raises:
        UserError: the spec cannot be deployed (see :func:`fedpilot.deploy._plan.plan`).
    """
    own_mlflow = _own_mlflow(spec, mlflow_uri)
    p = _plan(spec, learners, mlflow_uri)
    server_default, learner_default = default_images()
    server_image = image or server_default
    learner_image = learner_image or image or learner_default

    def build(role: str) -> dict[str, Any]:
        if build_context is None:
            return {}
        dockerfile = f"deploy/docker/Dockerfile.{role}"
        return {
            "build": {
                "context": build_context,
                "dockerfile": dockerfile,
                "args": {"VARIANT": variant},
            }
        }

    def secret(source: str, target: str) -> dict[str, str]:
        return {"source": source, "target": target}

    services: dict[str, Any] = {}
    secrets: dict[str, Any] = {}
    volumes: dict[str, Any] = {}
    if own_mlflow:
        services["mlflow"] = _mlflow_service(mlflow_image)
        volumes["mlflow-data"] = {}

    server_secrets = []
    if p.tls:
        secrets["tls-ca"] = {"file": f"{secrets_dir}/tls/ca.crt"}
        secrets["tls-server-cert"] = {"file": f"{secrets_dir}/tls/server.pem"}
        secrets["tls-server-key"] = {"file": f"{secrets_dir}/tls/server.key"}
        server_secrets += [
            secret("tls-ca", f"{TLS_DIR}/ca.crt"),
            secret("tls-server-cert", f"{TLS_DIR}/server.pem"),
            secret("tls-server-key", f"{TLS_DIR}/server.key"),
        ]
    if p.auth:
        secrets["authorized-learners"] = {"file": f"{secrets_dir}/keys/{ALLOW_LIST}"}
        server_secrets.append(secret("authorized-learners", f"{ALLOW_LIST_DIR}/{ALLOW_LIST}"))
    server: dict[str, Any] = {
        "image": server_image,
        **build("server"),
        "entrypoint": list(SERVER_COMMAND),
        "command": p.server_args(SPEC_FILE),
        "ports": [f"{p.port}:{p.port}"],
        "volumes": [
            {"type": "bind", "source": spec_file, "target": SPEC_FILE, "read_only": True},
            f"server-runs:{HOME}",
        ],
        **({"secrets": server_secrets} if server_secrets else {}),
        **({"depends_on": {"mlflow": {"condition": "service_healthy"}}} if own_mlflow else {}),
        "healthcheck": {
            "test": ["CMD", "fedpilot-healthcheck", *p.health_urls()],
            "interval": "10s",
            "timeout": "5s",
            "retries": 3,
            "start_period": "60s",
        },
        **_HARDENED,
    }
    services[SERVER_SERVICE] = server
    volumes["server-runs"] = {}

    for i in range(p.learners):
        name = f"learner-{i}"
        learner_secrets = []
        if p.tls:
            learner_secrets.append(secret("tls-ca", f"{TLS_DIR}/ca.crt"))
        if p.auth:
            secrets[f"{name}-key"] = {"file": f"{secrets_dir}/keys/{name}.key"}
            learner_secrets.append(secret(f"{name}-key", f"{KEYS_DIR}/{name}.key"))
        learner: dict[str, Any] = {
            "image": learner_image,
            **build("learner"),
            "entrypoint": list(LEARNER_COMMAND),
            "command": p.learner_args(str(i), SERVER_SERVICE),
            "volumes": [f"{name}-data:{HOME}"],
            **({"secrets": learner_secrets} if learner_secrets else {}),
            "depends_on": {SERVER_SERVICE: {"condition": "service_healthy"}},
            # A learner gives up when the server is not there in time; try again.
            "restart": "on-failure",
            **_HARDENED,
        }
        services[name] = learner
        volumes[f"{name}-data"] = {}

    compose: dict[str, Any] = {"services": services, "volumes": volumes}
    if secrets:
        compose["secrets"] = secrets
    return compose


def compose_spec_text(
    spec: FederationSpec, *, learners: int | None = None, mlflow_uri: str | None = None
) -> str:
    """The spec file for :func:`render_compose`'s ``spec_file``, container paths filled in."""
    return _plan(spec, learners, mlflow_uri).spec_text()


def _own_mlflow(spec: FederationSpec, mlflow_uri: str | None) -> bool:
    return mlflow_uri is None and spec.tracking.enabled


def _plan(spec: FederationSpec, learners: int | None, mlflow_uri: str | None) -> Plan:
    own = _own_mlflow(spec, mlflow_uri)
    return plan(spec, learners=learners, mlflow_uri=MLFLOW_URI if own else mlflow_uri)


def _mlflow_service(image: str) -> dict[str, Any]:
    check = (
        f"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{MLFLOW_PORT}/health')"
    )
    command = [
        "mlflow", "server",
        "--host", "0.0.0.0",
        "--port", str(MLFLOW_PORT),
        "--backend-store-uri", "sqlite:////mlflow/mlflow.db",
        "--artifacts-destination", "/mlflow/artifacts",
        "--serve-artifacts",
        # MLflow refuses Host headers it does not know (DNS rebinding): the server
        # reaches it as mlflow:5000, people on this host as localhost.
        "--allowed-hosts", f"mlflow:{MLFLOW_PORT},localhost:*,127.0.0.1:*",
    ]  # fmt: skip
    return {
        "image": image,
        "command": command,
        "ports": [f"{MLFLOW_PORT}:{MLFLOW_PORT}"],
        "volumes": ["mlflow-data:/mlflow"],
        "healthcheck": {
            "test": ["CMD", "python", "-c", check],
            "interval": "10s",
            "timeout": "5s",
            "retries": 12,
            "start_period": "20s",
        },
        "restart": "unless-stopped",
    }
