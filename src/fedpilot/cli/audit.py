"""``fedpilot audit verify``: check a run's hash-chained, signed audit log."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from fedpilot.cli._target import DEFAULT_OUTPUT_DIR, OutputDir, RunArg, resolve_run

audit_app = typer.Typer(help="The tamper-evident audit log of a run.", no_args_is_help=True)


@audit_app.command("verify")
def verify_command(
    run: RunArg,
    output_dir: OutputDir = DEFAULT_OUTPUT_DIR,
    public_key: Annotated[
        Path | None,
        typer.Option(
            "--public-key",
            help="The key the log must be signed with (a PEM copy of the run's audit.pub); "
            "default the signing key on this machine.",
            dir_okay=False,
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Check every line of RUN's audit.jsonl: chained, in order, signed. Exits 0 when the
    log holds, 1 naming the first bad line when it does not."""
    from fedpilot.audit import verify_log

    result = verify_log(resolve_run(run, output_dir), public_key=public_key)
    if as_json:
        fields = {
            "ok": result.ok,
            "path": str(result.path),
            "lines": result.lines,
            "bad_line": result.bad_line,
            "problem": result.problem,
            "signatures": result.signatures,
            "signed_through": result.signed_through,
            "unsigned_lines": result.unsigned,
            "torn_tail_bytes": result.torn_tail,
            "key_id": result.key_id,
            "key_source": result.key_source,
            "notes": result.notes,
        }
        typer.echo(json.dumps(fields))
    elif not result.ok:
        typer.echo(f"{result.path}: line {result.bad_line}: {result.problem}", err=True)
        typer.echo(f"TAMPERED: the audit log does not hold from line {result.bad_line}", err=True)
    else:
        typer.echo(
            f"{result.path}: intact: {result.lines} lines, {result.signatures} signatures "
            f"with key {result.key_id} ({result.key_source}), signed through line "
            f"{result.signed_through}"
        )
        if result.unsigned:
            typer.echo(
                f"note: the last {result.unsigned} lines are chained but not yet signed "
                "(the run is going on, or was cut mid-round)"
            )
        if result.torn_tail:
            typer.echo(
                f"note: torn last line ({result.torn_tail} bytes, no newline): a writer was "
                "killed mid-line; this is not tampering, and the next writer (a resumed "
                "run) cuts it off and records that it did"
            )
        for note in result.notes:
            typer.echo(f"note: {note}")
    raise typer.Exit(0 if result.ok else 1)
