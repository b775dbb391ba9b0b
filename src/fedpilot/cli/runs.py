"""``fedpilot runs``: list the runs in an output directory and show one in detail."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from fedpilot.errors import UserError
from fedpilot.orchestrator.vocabulary import EventType
from fedpilot.spec.sections import default_output_dir
from fedpilot.tracking.store import RunDetail, RunRecord, find_run_dir, list_runs, show_run

runs_app = typer.Typer(
    help="Inspect past and running federations in an output directory.",
    no_args_is_help=True,
)

# Round, status, counts, train loss, the main metric, time, and a little room for a reason.
_ROUNDS_TABLE_BASE_WIDTH = 82
_STATUS_STYLE = {
    "completed": "green",
    "running": "cyan",
    "stopped": "yellow",
    "interrupted": "yellow",
    "failed": "red",
    "rolled_back": "yellow",
}

OutputDir = Annotated[
    Path,
    typer.Option(
        "--output-dir", "-o", help="The runs directory (the spec's output_dir).", file_okay=False
    ),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]


@runs_app.command("list")
def list_command(output_dir: OutputDir = default_output_dir(), as_json: AsJson = False) -> None:
    """List the runs, newest first: id, name, status, rounds, main final metric, start."""
    try:
        records = list_runs(output_dir)
    except UserError as exc:
        _fail(exc)
    if as_json:
        _print_json([r.to_dict() for r in records])
        return
    console = Console()
    if not records:
        console.print(f"No runs in {escape(str(output_dir))}.")
        return
    # One main metric for all runs goes in the header, which keeps the rows narrow.
    metrics = {r.main_metric for r in records if r.main_metric is not None}
    shared = metrics.pop() if len(metrics) == 1 else None
    table = Table(
        title=f"Runs in {escape(str(output_dir))}",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        collapse_padding=True,
    )
    # Long run ids and names fold; the short columns never squeeze to "…".
    table.add_column("Run", overflow="fold", min_width=16)
    table.add_column("Name", overflow="fold")
    table.add_column("Status", no_wrap=True)
    table.add_column("Rounds", no_wrap=True, justify="right")
    header = "Final metric" if shared is None else f"Final {escape(shared)}"
    table.add_column(header, no_wrap=True, justify="left" if shared is None else "right")
    table.add_column("Started", no_wrap=True)
    # Why runs ended early, when any did: a column only then keeps the table narrow.
    reasons = any(r.error for r in records)
    if reasons:
        table.add_column("Reason", overflow="fold")
    for record in records:
        table.add_row(
            escape(record.run_id),
            escape(record.name),
            _status(record.status),
            _rounds(record),
            _number(record.main_value) if shared else _main_metric(record),
            _time(record.started_at),
            *([escape(record.error or "")] if reasons else []),
        )
    console.print(table)


@runs_app.command("show")
def show_command(
    run: Annotated[str, typer.Argument(help="A run id, or an unambiguous prefix of one.")],
    output_dir: OutputDir = default_output_dir(),
    as_json: AsJson = False,
) -> None:
    """Show one run: its summary and a table of its rounds."""
    try:
        detail = show_run(output_dir, run)
    except UserError as exc:
        _fail(exc)
    if as_json:
        _print_json(detail.to_dict())
        return
    console = Console()
    console.print(_summary(detail))
    if detail.rounds:
        console.print(_rounds_table(detail, console.width))
    else:
        console.print("No rounds recorded yet.")


@runs_app.command("stop")
def stop_command(
    run: Annotated[str, typer.Argument(help="A run id, or an unambiguous prefix of one.")],
    reason: Annotated[
        str, typer.Option("--reason", help="Why; recorded as the run's end reason.")
    ] = "stopped by `fedpilot runs stop`",
    output_dir: OutputDir = default_output_dir(),
) -> None:
    """Ask a running federation to stop after its current round. It ends `stopped`, with
    its checkpoint, and `fedpilot run --resume` continues it."""
    from fedpilot.orchestrator.federation import request_stop

    try:
        run_dir = find_run_dir(output_dir, run)
        status = show_run(output_dir, run_dir.name).status
        if status != "running":
            raise UserError(f"run {run_dir.name!r} is not running (status {status})")
    except UserError as exc:
        _fail(exc)
    request_stop(run_dir, reason)
    typer.echo(f"asked {run_dir.name} to stop after its current round")


def _summary(detail: RunDetail) -> Table:
    table = Table(title=f"Run {escape(detail.run_id)}", show_header=False, title_justify="left")
    table.add_column("field", style="bold")
    table.add_column("value")
    rows: list[tuple[str, str]] = [
        ("Name", escape(detail.name)),
        ("Status", _status(detail.status)),
        ("Rounds", _rounds(detail)),
        ("Rollbacks", str(detail.rollbacks)),
        ("Started", _time(detail.started_at)),
        ("Updated", _time(detail.updated_at)),
        ("Directory", escape(str(detail.run_dir))),
        ("MLflow run", detail.mlflow_run_id or "-"),
        ("Spec hash", detail.spec_hash or "-"),
    ]
    rows += [(f"final {escape(k)}", _number(v)) for k, v in sorted(detail.final_metrics.items())]
    if detail.error:
        label = "Error" if detail.status == "failed" else "Reason"
        rows.append((label, _status_colored(detail.status, escape(detail.error))))
    if detail.events:
        counts = (f"{kind} {detail.events[kind]}" for kind in EventType if kind in detail.events)
        rows.append(("Events", escape(", ".join(counts))))
    if detail.unreadable_event_lines:
        rows.append(
            (
                "Event log",
                f"[yellow]{detail.unreadable_event_lines} unreadable lines skipped "
                "(torn by a crash, or damaged)[/yellow]",
            )
        )
    for number, warning in enumerate(detail.warnings):
        where = "before round 1" if not warning.round else f"round {warning.round}"
        text = escape(f"{where}: {warning.message} [{warning.code}]")
        rows.append(("Warnings" if number == 0 else "", f"[yellow]{text}[/yellow]"))
    for name, value in rows:
        table.add_row(name, value)
    return table


def _rounds_table(detail: RunDetail, width: int) -> Table:
    names = sorted({name for row in detail.rounds for name in row.metrics})
    if detail.main_metric in names:
        names.remove(detail.main_metric)
        names.insert(0, detail.main_metric)
    # As many metric columns as the terminal holds (at least the main one); --json has all.
    room = width - _ROUNDS_TABLE_BASE_WIDTH
    shown = names[:1]
    for name in names[1:]:
        room -= max(len(name), 6) + 2
        if room < 0:
            break
        shown.append(name)
    table = Table(
        title="Rounds",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        collapse_padding=True,
    )
    for header in ("Round", "Status", "Accepted", "Rej.", "Fail.", "Train loss"):
        table.add_column(header, justify="left" if header == "Status" else "right", no_wrap=True)
    for name in shown:
        table.add_column(escape(name), justify="right", no_wrap=True)
    table.add_column("Time", justify="right", no_wrap=True)
    table.add_column("Reason", overflow="fold")
    for row in detail.rounds:
        table.add_row(
            str(row.round),
            _status(row.status),
            f"{row.accepted}/{row.participants}",
            str(row.rejected),
            str(row.failed),
            _number(row.train_loss),
            *(_number(row.metrics.get(name)) for name in shown),
            "-" if row.duration is None else f"{row.duration:.1f}s",
            escape(row.reason or ""),
        )
    return table


def _status(status: str) -> str:
    return _status_colored(status, escape(status))


def _status_colored(status: str, text: str) -> str:
    """``text`` (markup) in the colour of ``status``."""
    style = _STATUS_STYLE.get(status)
    return f"[{style}]{text}[/{style}]" if style else text


def _rounds(record: RunRecord) -> str:
    total = "?" if record.total_rounds is None else str(record.total_rounds)
    return f"{record.rounds_completed}/{total}"


def _main_metric(record: RunRecord) -> str:
    if record.main_metric is None:
        return "-"
    return f"{escape(record.main_metric)}={_number(record.main_value)}"


def _number(value: float | None, *, digits: int = 4) -> str:
    if value is None:
        return "-"
    if value != 0 and not 1e-3 <= abs(value) < 1e5:
        return f"{value:.{digits}g}"
    return f"{value:.{digits}f}"


def _time(value: datetime | None) -> str:
    if value is None:
        return "-"
    try:
        return value.astimezone().strftime("%Y-%m-%d %H:%M")
    except (OverflowError, ValueError, OSError):  # a time at the ends of the calendar
        return "-"


def _print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2))


def _fail(exc: UserError) -> NoReturn:
    typer.echo(f"error: {exc}", err=True)
    raise typer.Exit(2)
