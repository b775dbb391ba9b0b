"""``fedpilot models``: registered models, their versions and aliases; promote and roll back.

The store is the runs' own: ``--tracking-uri``, else the ``mlflow.db`` of ``--output-dir``
(the spec's ``output_dir``, as ``fedpilot run`` uses by default). Bad input (an unknown
model or version, no store) exits 2; a promotion refused by a gate exits 1.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from fedpilot.errors import UserError
from fedpilot.rundir import mlflow_db
from fedpilot.spec.sections import default_output_dir

if TYPE_CHECKING:
    from fedpilot.model_registry import ModelRegistry, Promotion

models_app = typer.Typer(
    help="Registered models: list, show, promote the challenger, roll the champion back.",
    no_args_is_help=True,
)

TrackingUri = Annotated[
    str | None,
    typer.Option(
        "--tracking-uri", help="The MLflow store; default: the mlflow.db of --output-dir."
    ),
]
OutputDir = Annotated[
    Path,
    typer.Option(
        "--output-dir", "-o", help="The runs directory (the spec's output_dir).", file_okay=False
    ),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]
Name = Annotated[str, typer.Argument(help="The registered model's name (registry.model_name).")]


@models_app.command("list")
def list_command(
    tracking_uri: TrackingUri = None,
    output_dir: OutputDir = default_output_dir(),
    as_json: AsJson = False,
) -> None:
    """List the registered models: versions, champion, challenger."""
    registry = _open(tracking_uri, output_dir)
    models = [registry.show(name) for name in registry.names()]
    if as_json:
        _print_json(
            [
                {
                    "name": m.name,
                    "versions": len(m.versions),
                    "latest_version": m.versions[0].version if m.versions else None,
                    "aliases": dict(sorted(m.aliases.items())),
                }
                for m in models
            ]
        )
        return
    console = Console()
    if not models:
        console.print(f"No registered models in {escape(registry.uri)}.")
        return
    table = Table(title="Registered models", box=box.SIMPLE_HEAD, show_edge=False)
    for column in ("Name", "Versions", "Champion", "Challenger", "Champion's metric"):
        table.add_column(column, overflow="fold")
    for model in models:
        champion = model.aliases.get("champion")
        metric = next((_metric(v.tags) for v in model.versions if v.version == champion), "")
        table.add_row(
            escape(model.name),
            str(len(model.versions)),
            champion or "-",
            model.aliases.get("challenger", "-"),
            escape(metric),
        )
    console.print(table)


@models_app.command("show")
def show_command(
    name: Name,
    tracking_uri: TrackingUri = None,
    output_dir: OutputDir = default_output_dir(),
    as_json: AsJson = False,
) -> None:
    """Show a registered model: every version with its aliases, lineage and gate decision."""
    model = _call(lambda: _open(tracking_uri, output_dir).show(name))
    if as_json:
        _print_json(model.to_dict())
        return
    console = Console()
    history = " → ".join(model.champion_history) or "none yet"
    console.print(f"[bold]{escape(model.name)}[/bold]  champions so far: {escape(history)}")
    metrics = {v.tags.get("fedpilot.gate.metric", "metric") for v in model.versions}
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, collapse_padding=True)
    # The short columns never fold; the run id takes what is left.
    for column in ("Version", "Aliases", "Round", " / ".join(sorted(metrics)), "Worst", "Gate"):
        table.add_column(escape(column), no_wrap=True)
    table.add_column("Run", overflow="fold", min_width=12)
    for v in model.versions:
        tags = v.tags
        # The tag is "<time>: passed (...)" or "<time>: failed: ..."; --json has it whole.
        decision = tags.get("fedpilot.gate.decision", "").partition(": ")[2]
        table.add_row(
            v.version,
            ", ".join(v.aliases) or "-",
            tags.get("fedpilot.model_round", "-"),
            _number(tags.get("fedpilot.metric.central")),
            _number(tags.get("fedpilot.metric.worst_learner")),
            decision.split(" ", 1)[0].rstrip(":") or "-",
            escape(tags.get("fedpilot.run_id", "-")),
        )
    console.print(table)


@models_app.command("promote")
def promote_command(
    name: Name,
    version: Annotated[
        str | None, typer.Option("--version", help="The version to promote; default: challenger.")
    ] = None,
    tracking_uri: TrackingUri = None,
    output_dir: OutputDir = default_output_dir(),
    as_json: AsJson = False,
) -> None:
    """Make the challenger (or --version) the champion if the gate rules pass; a failing
    gate keeps the champion, names the rule with both values and exits 1."""
    from fedpilot.model_registry import GateFailed

    registry = _open(tracking_uri, output_dir)
    try:
        promotion = _call(lambda: registry.promote(name, version))
    except GateFailed as refused:
        _report(refused.promotion, as_json)
        raise typer.Exit(1) from None
    _report(promotion, as_json)


@models_app.command("rollback")
def rollback_command(
    name: Name,
    tracking_uri: TrackingUri = None,
    output_dir: OutputDir = default_output_dir(),
    as_json: AsJson = False,
) -> None:
    """Move the champion back to the previous champion."""
    demoted, restored = _call(lambda: _open(tracking_uri, output_dir).rollback(name))
    if as_json:
        _print_json({"name": name, "from": demoted, "champion": restored})
        return
    typer.echo(f"{name}: champion back to version {restored} (was version {demoted})")


def _report(promotion: Promotion, as_json: bool) -> None:
    if as_json:
        _print_json(promotion.to_dict())
        return
    decision = promotion.decision
    if decision.passed:
        typer.echo(
            f"{promotion.name}: version {promotion.version} is the champion "
            f"(gates {decision.summary()})"
        )
        return
    kept = (
        f"version {promotion.champion_before} stays the champion"
        if promotion.champion_before
        else "there is still no champion"
    )
    typer.echo(f"{promotion.name}: version {promotion.version} not promoted; {kept}", err=True)
    for failure in decision.failures:
        typer.echo(f"  gate {failure.message}", err=True)


def _open(tracking_uri: str | None, output_dir: Path) -> ModelRegistry:
    from fedpilot.model_registry import ModelRegistry

    db: Path | None
    if tracking_uri is None:
        db = mlflow_db(output_dir).resolve()
        where = f"--output-dir {output_dir}"
        uri = f"sqlite:///{db}"
    else:
        # A sqlite store that is not there would be created empty: refuse it instead.
        path = tracking_uri.removeprefix("sqlite:///").partition("?")[0]
        db = Path(path) if tracking_uri.startswith("sqlite:///") else None
        where, uri = f"--tracking-uri {tracking_uri}", tracking_uri
    if db is not None and not db.is_file():
        _fail(
            UserError(
                f"no MLflow store at {db} ({where}); give the runs' --output-dir or --tracking-uri"
            )
        )
    registry: ModelRegistry = _call(lambda: ModelRegistry(uri))
    return registry


def _call(action: Any) -> Any:
    try:
        return action()
    except UserError as exc:
        _fail(exc)


def _metric(tags: dict[str, str]) -> str:
    value = tags.get("fedpilot.metric.central")
    if value is None:
        return "-"
    return f"{tags.get('fedpilot.gate.metric', 'metric')}={_number(value)}"


def _number(text: str | None) -> str:
    try:
        return "-" if text is None else f"{float(text):.4f}"
    except ValueError:
        return text or "-"


def _print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2))


def _fail(exc: UserError) -> NoReturn:
    typer.echo(f"error: {exc}", err=True)
    raise typer.Exit(2)
