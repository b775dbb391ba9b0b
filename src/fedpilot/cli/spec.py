"""`fedpilot spec check|schema`."""

from __future__ import annotations

import json
from pathlib import Path

import typer
import yaml
from rich.console import Console

from fedpilot.spec import load_spec, schema

spec_app = typer.Typer(help="Validate specs and export their JSON Schema.", no_args_is_help=True)


@spec_app.command("check")
def check(
    spec_file: Path = typer.Argument(..., help="The federation spec (YAML)."),
    overrides: list[str] = typer.Option([], "--set", help="Override a field: key.sub=value."),
    show: bool = typer.Option(False, "--show", help="Print the resolved spec."),
) -> None:
    """Validate a spec; exit 2 with a message naming the field if it is invalid."""
    spec = load_spec(spec_file, overrides)
    if show:
        typer.echo(yaml.safe_dump(spec.resolved(), sort_keys=False), nl=False)
    Console(stderr=True).print(f"[green]ok[/] {spec_file}: {spec.name} (spec hash {spec.digest()})")


@spec_app.command("schema")
def export_schema() -> None:
    """Print the JSON Schema of a federation spec."""
    typer.echo(json.dumps(schema(), indent=2))
