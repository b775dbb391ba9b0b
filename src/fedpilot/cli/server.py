"""`fedpilot server`: run a federation whose learners are other machines."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from fedpilot.cli.run import EXIT_CODES
from fedpilot.errors import ResumeError, UserError
from fedpilot.orchestrator.vocabulary import ROUND_ENDS, EventType
from fedpilot.rundir import RunDir
from fedpilot.spec import FederationSpec, load_spec

INSECURE_WARNING = (
    "[yellow]warning:[/] --insecure: TLS is off, everything between server and learners "
    "travels in plain text. Use it on a trusted network for development only."
)


def server_command(
    spec_file: Path | None = typer.Argument(None, help="The federation spec (YAML)."),
    overrides: list[str] = typer.Option([], "--set", help="Override a spec field: --set rounds=5."),
    superlink: str | None = typer.Option(
        None, "--superlink", help="host:port of a running SuperLink to use instead of starting one."
    ),
    resume: bool = typer.Option(
        False, "--resume", help="Continue the latest run of SPEC from its last checkpoint."
    ),
    run_dir: Path | None = typer.Option(
        None, "--run-dir", help="With --resume: the run directory to continue."
    ),
    insecure: bool = typer.Option(
        False, "--insecure", help="No TLS (development only; prints a warning)."
    ),
    as_json: bool = typer.Option(
        False, "--json", help="Print one JSON object with the outcome on stdout."
    ),
    output_dir: Path | None = typer.Option(None, help="Where runs are written."),
) -> None:
    """Serve a federation over Flower's deployment engine: start a SuperLink, submit the
    run, and follow it while learners (`fedpilot learner`) train on their own machines."""
    from fedpilot.deployment.server import FederationServer, prepare_spec
    from fedpilot.launch import load_run_spec

    console = Console(stderr=True)
    if resume:
        if run_dir is None:
            if spec_file is None:
                raise UserError("--resume needs SPEC (its latest run) or --run-dir RUN_DIR")
            extra = [f"output_dir={output_dir}"] if output_dir is not None else []
            run_dir = latest_run(load_spec(spec_file, [*overrides, *extra]))
        spec = load_run_spec(run_dir)
    else:
        if spec_file is None:
            raise UserError("give a SPEC file (or --resume --run-dir RUN_DIR)")
        extra = [f"output_dir={output_dir}"] if output_dir is not None else []
        spec = prepare_spec(load_spec(spec_file, [*overrides, *extra]))
    server = FederationServer(
        spec,
        resume_dir=run_dir if resume else None,
        superlink=superlink,
        insecure=True if insecure else None,
        on_event=EventPrinter(console, spec).print if not as_json else lambda e: None,
    )
    if server.insecure:
        console.print(INSECURE_WARNING)
    server.prepare()
    console.print(
        f"[bold]{spec.name}[/] · run directory [cyan]{server.run_dir}[/] · "
        + ("resuming · " if resume else "")
        + f"learners connect to {server.superlink or server.runtime.listen}"
    )
    outcome = server.run()
    if outcome.error and not as_json:
        from fedpilot.cli.live import end_line

        console.print(end_line(outcome.status, outcome.error), soft_wrap=True)
    if as_json:
        finished = outcome.finished or {}
        summary = {
            "run_id": server.run_dir.name,
            "run_dir": str(server.run_dir),
            "rounds_completed": finished.get("rounds_completed", 0),
            "final_metrics": finished.get("final_metrics", {}),
            "rollbacks": finished.get("rollbacks", 0),
            "status": outcome.status,
        }
        sys.stdout.write(json.dumps(summary) + "\n")
        sys.stdout.flush()
    raise typer.Exit(EXIT_CODES.get(outcome.status, 1))


def latest_run(spec: FederationSpec) -> Path:
    """The most recent run of ``spec`` (by name) under its output directory."""
    runs = [
        path
        for path in spec.output_dir.glob(f"{spec.name}-*")
        if RunDir(path).spec.is_file() and RunDir(path).checkpoints.is_dir()
    ]
    if not runs:
        raise ResumeError(
            f"no run of {spec.name!r} with a checkpoint under {str(spec.output_dir)!r} to resume"
        )
    return max(runs, key=lambda p: p.stat().st_mtime)


class EventPrinter:
    """One line per thing worth seeing, from the events the ServerApp records."""

    def __init__(self, console: Console, spec: FederationSpec) -> None:
        self.console = console
        self.spec = spec

    def print(self, event: dict[str, Any]) -> None:
        from fedpilot.cli.live import (
            alert_line,
            format_metrics,
            metrics_line,
            privacy_line,
            round_line,
            warning_line,
        )

        kind = event.get("event")
        if kind == EventType.RUN_STARTED:
            self.console.print(f"run started at round {event.get('start_round', 1)}")
            run_dir = event.get("run_dir")
            if run_dir and self.spec.runtime.metrics_port is not None:
                served = metrics_line(Path(str(run_dir)))
                if served is not None:
                    self.console.print(served, soft_wrap=True)
        elif kind in (EventType.ALERT_FIRING, EventType.ALERT_RESOLVED):
            line = alert_line(
                round_=int(event.get("round") or 0),
                name=str(event.get("name", "")),
                state=str(event.get("state", "")),
                summary=str(event.get("summary", "")),
            )
            self.console.print(line, soft_wrap=True)
        elif kind in (EventType.LEARNER_JOINED, EventType.LEARNER_LEFT):
            verb = "joined" if kind == EventType.LEARNER_JOINED else "left"
            self.console.print(f"learner [cyan]{event.get('learner')}[/] {verb}")
        elif kind == EventType.LEARNER_REFUSED:
            # `none`: it sent no key; `unknown`: it was refused at TLS, before any key.
            learner = event.get("learner")
            who = {"none": "without a key", "unknown": "at the TLS handshake"}.get(
                str(learner), f"with key {learner}"
            )
            self.console.print(f"[yellow]refused[/] a learner {who}: {event.get('detail', '')}")
        elif kind == EventType.WARNING:
            line = warning_line(
                round_=int(event.get("round") or 0),
                code=str(event.get("code", "")),
                message=str(event.get("message", "")),
            )
            self.console.print(line, soft_wrap=True)
        elif kind in ROUND_ENDS:
            metrics = {
                k: float(v)
                for k, v in (event.get("global_metrics") or {}).items()
                if isinstance(v, int | float)
            }
            line = round_line(
                round_=int(event.get("round") or 0),
                total=self.spec.rounds,
                accepted=len(event.get("accepted") or []),
                participants=len(event.get("participants") or []),
                problems=len(event.get("rejected") or {}) + len(event.get("failed") or {}),
                metrics=metrics,
                duration=float(event.get("duration") or 0),
                status=str(event.get("status")),
                privacy=event.get("privacy") or {},
            )
            self.console.print(line, soft_wrap=True)
        elif kind == EventType.PRIVACY_SPENT:
            line = privacy_line(
                round_=int(event.get("round") or 0),
                epsilon=float(event.get("epsilon") or 0),
                delta=float(event.get("delta") or 0),
                target=event.get("target_epsilon"),
            )
            self.console.print(line, soft_wrap=True)
        elif kind == EventType.RUN_FINISHED:
            self.console.print(
                f"run {event.get('status')}: {event.get('rounds_completed')} rounds, "
                f"{format_metrics(event.get('final_metrics') or {})}"
            )
