"""Shared for the deploy tests: where things are, and checks of Kubernetes objects against
the API's schemas and client models (no cluster, no network)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import click
import pytest
import typer.main

from fedpilot.spec import FederationSpec, load_spec

ROOT = Path(__file__).resolve().parents[2]
FLOWER_SPEC = ROOT / "examples" / "deploy" / "flower-digits.yaml"
# The oldest Kubernetes the chart supports (pod-index label) and the newest schemas we have.
KUBE_VERSIONS = ("1.28", "latest")

Objects = list[dict[str, Any]]


def _kube_versions() -> list[str]:
    import kubernetes_validate.utils as kv_utils

    return [kv_utils.latest_version() if v == "latest" else v for v in KUBE_VERSIONS]


def check_objects(objects: Iterable[dict[str, Any]]) -> None:
    """Each object validates strictly (no unknown field) against the OpenAPI schemas of
    every Kubernetes version in KUBE_VERSIONS, and survives a round trip through the
    official client's models unchanged."""
    import kubernetes_validate
    from kubernetes.client import ApiClient

    client = ApiClient()
    for obj in objects:
        for version in _kube_versions():
            kubernetes_validate.validate(obj, version, strict=True)
        model = client.deserialize(json.dumps(obj), f"V1{obj['kind']}", "application/json")
        assert client.sanitize_for_serialization(model) == obj, obj["metadata"]["name"]


@pytest.fixture
def k8s_valid() -> Callable[[Iterable[dict[str, Any]]], None]:
    return check_objects


@pytest.fixture(scope="session")
def flower_spec() -> FederationSpec:
    return load_spec(FLOWER_SPEC)


def cli_command(name: str) -> click.Command | None:
    """The `fedpilot NAME` command from the CLI's registry, None if it is not there."""
    from fedpilot.cli import app

    group = typer.main.get_command(app)
    assert isinstance(group, click.Group)
    return group.commands.get(name)


@pytest.fixture
def fedpilot_command() -> Callable[[str], click.Command | None]:
    return cli_command


@pytest.fixture
def parse_cli() -> Callable[[list[str]], dict[str, Any]]:
    """Parse ``fedpilot <command> <args>`` with the real CLI, without running it."""

    def parse(argv: list[str]) -> dict[str, Any]:
        command = cli_command(argv[0])
        if command is None:
            pytest.skip(f"`fedpilot {argv[0]}` is not in this tree yet")
        ctx = command.make_context(argv[0], list(argv[1:]))
        return dict(ctx.params)

    return parse
