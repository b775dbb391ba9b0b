"""`fedpilot run`: a federation (or its centralized baseline) from a spec."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.console import Console

from fedpilot.errors import UserError
from fedpilot.orchestrator.events import Callback, RunInfo, RunResult
from fedpilot.spec import load_spec

EXIT_CODES: dict[str, int] = {"completed": 0, "failed": 1, "stopped": 3, "interrupted": 130}
"""How `fedpilot run` and `fedpilot server` exit, by the run's status: a stopped run
(asked to stop after a round; it can be resumed) is neither a success nor a failure."""


class _RunIdentity(Callback):
    """Remembers the run id and directory for the --json summary."""

    run: RunInfo | None = None

    def on_run_start(self, *, run: RunInfo) -> None:
        self.run = run


def run_command(
    spec_file: Path | None = typer.Argument(None, help="The federation spec (YAML)."),
    overrides: list[str] = typer.Option(
        [], "--set", help="Override a spec field: --set rounds=5 --set local.lr=0.1."
    ),
    resume: Path | None = typer.Option(
        None, "--resume", help="Continue this run directory from its latest checkpoint."
    ),
    centralized: bool = typer.Option(
        False, "--centralized", help="Train on the pooled data instead: the baseline."
    ),
    as_json: bool = typer.Option(
        False, "--json", help="Print one JSON object with the outcome on stdout."
    ),
    output_dir: Path | None = typer.Option(None, help="Where runs are written."),
    report: bool = typer.Option(
        False, "--report", help="Write the run's HTML report (RUN_DIR/report.html) at its end."
    ),
) -> None:
    """Run a federation: rounds of local training, aggregation, evaluation and guard."""
    # Imported here so `fedpilot spec ...` and `--help` don't load torch and Flower.
    from fedpilot.cli.live import LiveView
    from fedpilot.launch import load_run_spec, run_centralized, run_federation

    if resume is not None:
        if spec_file is not None or overrides or centralized:
            raise UserError(
                "--resume continues a run as it was: give no SPEC, --set or --centralized"
            )
        spec = load_run_spec(resume)
    elif spec_file is None:
        raise UserError("give a SPEC file, or --resume RUN_DIR")
    else:
        extra = [f"output_dir={output_dir}"] if output_dir is not None else []
        spec = load_spec(spec_file, [*overrides, *extra])
    console = Console(stderr=True)
    identity = _RunIdentity()
    callbacks: list[Callback] = [identity]
    if not as_json:
        callbacks.append(LiveView(console))
    if centralized:
        result = run_centralized(spec, callbacks=callbacks)
    else:
        result = run_federation(spec, callbacks=callbacks, resume_dir=resume)
    if report and identity.run is not None:
        _write_report(identity.run.run_dir, console)
    if as_json:
        _print_json(identity.run, result)
    raise typer.Exit(EXIT_CODES[result.status])


def _write_report(run_dir: Path, console: Console) -> None:
    """The run's report; a report that cannot be written is said, and the run's own exit
    code stands."""
    from fedpilot.report import write_report

    try:
        console.print(f"report: {write_report(run_dir)}")
    except UserError as exc:
        console.print(f"[yellow]report not written: {exc}[/yellow]")


def _print_json(run: RunInfo | None, result: RunResult) -> None:
    summary = {
        "run_id": run.run_id if run else None,
        "run_dir": str(run.run_dir) if run else None,
        "rounds_completed": result.rounds_completed,
        "final_metrics": result.final_metrics,
        "rollbacks": result.rollbacks,
        "status": result.status,
        "error": result.error,
        "tracking_error": result.tracking_error,
    }
    sys.stdout.write(json.dumps(summary) + "\n")
    sys.stdout.flush()


__all__ = ["run_command"]
