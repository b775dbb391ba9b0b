"""`fedpilot tune`: an Optuna study whose trials are federations of a spec."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from fedpilot.spec import load_spec

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial


def tune_command(
    spec_file: Path = typer.Argument(..., help="The spec (YAML), with a `tune:` section."),
    trials: int = typer.Option(..., "--trials", help="Finished trials the study should hold."),
    timeout: float | None = typer.Option(
        None, "--timeout", help="Start no trial after this many seconds."
    ),
    study: str | None = typer.Option(None, "--study", help="Study name (default: the spec's)."),
    storage: str | None = typer.Option(
        None, "--storage", help="Any SQLAlchemy URL (default: sqlite <output_dir>/tune.db)."
    ),
    overrides: list[str] = typer.Option([], "--set", help="Override a spec field."),
    as_json: bool = typer.Option(False, "--json", help="Print the best trial as JSON at the end."),
) -> None:
    """Tune a federation: each trial runs the spec with sampled values; hopeless trials
    are stopped after a round; the best trial's spec is written as YAML. Exits 1 when
    no trial of the study completed."""
    from fedpilot.hpo.study import best_trials, default_storage, tune

    spec = load_spec(spec_file, overrides)
    view = TuneView(Console(stderr=True))
    with view:
        result = tune(
            spec,
            trials=trials,
            timeout=timeout,
            study_name=study,
            storage=storage,
            observe_round=view.round_done,
            observe_trial=view.trial_done,
        )
    best = best_trials(result.study)
    summary: dict[str, Any] = {
        "study": result.study.study_name,
        "storage": storage or default_storage(spec),
        "finished_trials": sum(t.state.is_finished() for t in result.study.trials),
        "trials_run_here": result.trials_run,
        "rounds_run": sum(int(t.user_attrs.get("rounds_run", 0)) for t in result.study.trials),
        "best": [_trial_json(t) for t in best],
        "best_spec": str(result.best_spec) if result.best_spec else None,
    }
    if as_json:
        sys.stdout.write(json.dumps(summary) + "\n")
        sys.stdout.flush()
    elif result.best_spec is not None:
        view.console.print(f"best spec: {result.best_spec}  (fedpilot run {result.best_spec})")
    if not best:  # every trial failed (or none ran): nothing was tuned
        view.console.print("fedpilot: no trial of the study completed")
        raise typer.Exit(1)


def _trial_json(trial: FrozenTrial) -> dict[str, Any]:
    return {
        "number": trial.number,
        "values": trial.values,
        "params": trial.params,
        "rounds_run": trial.user_attrs.get("rounds_run"),
        "run_id": trial.user_attrs.get("run_id"),
    }


class TuneView:
    """The study's trials as a table (number, state, value, rounds run, pruned at) and the
    best so far, redrawn after every round and trial, on stderr."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._rows: dict[int, dict[str, Any]] = {}
        self._best: str = "best: none yet"
        self._live = Live(console=console, auto_refresh=False, transient=False)

    def __enter__(self) -> TuneView:
        self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._live.__exit__(None, None, None)

    def round_done(self, number: int, round: int, value: float | None) -> None:
        row = self._rows.setdefault(number, {"state": "RUNNING"})
        row.update(rounds=round, value=value)
        self._draw()

    def trial_done(self, study: optuna.Study, trial: FrozenTrial) -> None:
        from fedpilot.hpo.study import best_trials

        for t in study.get_trials(deepcopy=False):
            self._rows[t.number] = {
                "state": t.state.name,
                "value": t.values[0] if t.values else _last(t),
                "rounds": t.user_attrs.get("rounds_run"),
                "pruned_at": t.user_attrs.get("pruned_at"),
            }
        best = best_trials(study)
        if best:
            b = best[0]
            self._best = f"best: trial {b.number} value {b.values} params {b.params}"
        self._draw()

    def _draw(self) -> None:
        table = Table(title="trials", expand=False)
        for column in ("trial", "state", "value", "rounds run", "pruned at"):
            table.add_column(column)
        for number in sorted(self._rows)[-30:]:  # the latest: a long study scrolls
            row = self._rows[number]
            value = row.get("value")
            table.add_row(
                str(number),
                str(row.get("state", "")),
                "" if value is None else f"{value:.4f}",
                str(row.get("rounds") or ""),
                str(row.get("pruned_at") or ""),
            )
        self._live.update(Group(table, Text(self._best)), refresh=True)


def _last(trial: FrozenTrial) -> float | None:
    steps = trial.intermediate_values
    return steps[max(steps)] if steps else None


__all__ = ["TuneView", "tune_command"]
