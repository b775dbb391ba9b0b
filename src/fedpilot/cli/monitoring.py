"""`fedpilot monitoring rules|dashboard`: the Prometheus alert rules and the Grafana
dashboard, to deploy beside a Prometheus server."""

from __future__ import annotations

from pathlib import Path

import typer

monitoring_app = typer.Typer(
    help="Prometheus alert rules and a Grafana dashboard for fedpilot's metrics.",
    no_args_is_help=True,
)


@monitoring_app.command("rules")
def rules(
    spec_file: Path | None = typer.Argument(
        None, help="Take the thresholds from this spec's monitoring section (default: defaults)."
    ),
    overrides: list[str] = typer.Option([], "--set", help="Override a spec field."),
) -> None:
    """Print fedpilot's alert rules as a Prometheus rules file."""
    from fedpilot.monitoring.rules import rules_yaml
    from fedpilot.spec import load_spec
    from fedpilot.spec.monitoring import MonitoringSpec

    settings = MonitoringSpec()
    if spec_file is not None:
        settings = load_spec(spec_file, overrides).monitoring or settings
    typer.echo(rules_yaml(settings), nl=False)


@monitoring_app.command("dashboard")
def dashboard() -> None:
    """Print the Grafana dashboard (JSON) over fedpilot's metrics."""
    from fedpilot.monitoring.dashboard import dashboard_json

    typer.echo(dashboard_json(), nl=False)
