"""``fedpilot report``: a run's self-contained HTML report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fedpilot.cli._target import DEFAULT_OUTPUT_DIR, OutputDir, RunArg, resolve_run


def report_command(
    run: RunArg,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", help="The HTML file to write; default RUN/report.html.", dir_okay=False
        ),
    ] = None,
    output_dir: OutputDir = DEFAULT_OUTPUT_DIR,
) -> None:
    """Write RUN's report: one HTML file with inline plots that opens offline."""
    from fedpilot.report import write_report

    path = write_report(resolve_run(run, output_dir), out)
    typer.echo(str(path))
