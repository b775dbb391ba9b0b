"""The RUN argument of `fedpilot audit verify` and `fedpilot report`: a run directory, or
a run id (or an unambiguous prefix of one) in the output directory."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fedpilot.rundir import RunDir
from fedpilot.spec.sections import default_output_dir
from fedpilot.tracking.store import find_run_dir

RunArg = Annotated[
    str, typer.Argument(help="A run directory, or a run id (or an unambiguous prefix of one).")
]
OutputDir = Annotated[
    Path,
    typer.Option(
        "--output-dir",
        "-o",
        help="Where to look for a run id (the spec's output_dir).",
        file_okay=False,
    ),
]
DEFAULT_OUTPUT_DIR = default_output_dir()


def resolve_run(run: str, output_dir: Path) -> Path:
    """The run directory ``run`` names: itself when it is one, else the run with that id.

    Raises:
        UserError: Neither a run directory nor one run's id.
    """
    path = Path(run)
    if path.is_dir() and any(m.is_file() for m in RunDir(path).markers):
        return path
    return find_run_dir(output_dir, run)
