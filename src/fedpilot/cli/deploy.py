"""`fedpilot deploy render`: Kubernetes objects, a Compose project or Helm values for a spec."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

deploy_app = typer.Typer(
    help="Deploy a federation on real machines: render Kubernetes, Compose or Helm files.",
    no_args_is_help=True,
)


class Format(StrEnum):
    k8s = "k8s"
    compose = "compose"
    helm = "helm"
    both = "both"


@deploy_app.command("render")
def render(
    spec_file: Path = typer.Option(
        ..., "--spec", help="The federation spec (runtime.mode: flower)."
    ),
    out: Path = typer.Option(..., "--out", help="Folder to write the files to.", file_okay=False),
    overrides: list[str] = typer.Option([], "--set", help="Override a spec field: key.sub=value."),
    fmt: Format = typer.Option(
        Format.k8s,
        "--format",
        help="k8s: kubernetes.yaml (all objects, one multi-document file); compose: "
        "compose.yaml and the spec.yaml it mounts; helm: values.yaml for "
        "deploy/helm/fedpilot; both: k8s and compose.",
    ),
    image: str | None = typer.Option(
        None, "--image", help="Image for server and learners; default fedpilot-{server,learner}."
    ),
    learner_image: str | None = typer.Option(None, "--learner-image", help="Learners' image."),
    learners: int | None = typer.Option(
        None, "--learners", min=1, help="Learners to run; default the spec's data.num_learners."
    ),
    namespace: str = typer.Option("default", "--namespace", help="Kubernetes namespace."),
    release: str = typer.Option("fedpilot", "--release", help="Prefix of Kubernetes names."),
    mlflow_uri: str | None = typer.Option(
        None,
        "--mlflow-uri",
        help="MLflow tracking URI for the server; compose default: its own mlflow service.",
    ),
    tls_secret: str = typer.Option(
        "fedpilot-tls",
        "--tls-secret",
        help="Kubernetes Secret with ca.crt, server.pem, server.key.",
    ),
    keys_secret: str = typer.Option(
        "fedpilot-learner-keys",
        "--keys-secret",
        help="Kubernetes Secret with learner-<i>.key files and authorized_learners.yaml.",
    ),
) -> None:
    """Write deployment files for SPEC to --out and list what was written."""
    # Imported here so the rest of the CLI does not pay for it.
    from fedpilot.deploy import (
        Written,
        chart_values,
        compose_spec_text,
        render_compose,
        render_manifests,
        write_compose,
        write_kubernetes,
        write_values,
    )
    from fedpilot.spec import load_spec

    spec = load_spec(spec_file, overrides)
    written: list[Written] = []
    common = {"image": image, "learner_image": learner_image, "mlflow_uri": mlflow_uri}
    secrets = {"tls_secret": tls_secret, "keys_secret": keys_secret}
    if fmt in (Format.k8s, Format.both):
        objects = render_manifests(
            spec, learners=learners, namespace=namespace, release=release, **common, **secrets
        )
        written.append(write_kubernetes(spec, objects, out))
    if fmt in (Format.compose, Format.both):
        compose = render_compose(
            spec, image=image, learner_image=learner_image, learners=learners, mlflow_uri=mlflow_uri
        )
        text = compose_spec_text(spec, learners=learners, mlflow_uri=mlflow_uri)
        written += write_compose(spec, compose, text, out)
    if fmt is Format.helm:
        values = chart_values(spec, learners=learners, release=release, **common, **secrets)
        written.append(write_values(spec, values, out))
    console = Console()
    for item in written:
        console.print(f"wrote [cyan]{escape(str(item.path))}[/]: {escape(item.what)}")
