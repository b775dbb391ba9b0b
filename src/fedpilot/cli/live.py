"""The terminal view of a run: a progress bar with current metrics, or one line per
round when stderr is not a terminal; a summary table at the end."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from fedpilot.orchestrator.events import (
    Alert,
    Callback,
    DriftFinding,
    PrivacyLoss,
    RoundSummary,
    RunInfo,
    RunResult,
)
from fedpilot.privacy.dpsgd import EPSILON as SAMPLE_EPSILON
from fedpilot.rundir import RunDir
from fedpilot.types import LearnerId, Metrics, RoundContext


def format_metrics(metrics: Metrics, limit: int = 4) -> str:
    shown = sorted(metrics.items(), key=lambda kv: (kv[0].startswith("federated_"), kv[0]))
    return "  ".join(f"{k}={v:.4f}" for k, v in shown[:limit])


def round_line(
    *,
    round_: int,
    total: int,
    accepted: int,
    participants: int,
    problems: int,
    metrics: Metrics,
    duration: float,
    status: str,
    privacy: Metrics | None = None,
) -> str:
    """One finished round, as the terminal shows it (with DP-SGD's record-level ε so far)."""
    note = {"rolled_back": " [yellow]rolled back[/]", "failed": " [red]failed[/]"}.get(status, "")
    sample = (privacy or {}).get(SAMPLE_EPSILON)
    return (
        f"round {round_:>3}/{total}  {accepted}/{participants} accepted"
        + (f" ({problems} rejected/failed)" if problems else "")
        + f"  {format_metrics(metrics)}  {duration:.1f}s"
        + (f"  record-level ε={sample:.3g}" if sample is not None else "")
        + note
    )


def privacy_line(*, round_: int, epsilon: float, delta: float, target: float | None) -> str:
    """The learner-level privacy budget spent after a round, as the terminal shows it."""
    budget = f" of {target:g}" if target is not None else ""
    return escape(f"privacy (round {round_}): ε={epsilon:.3g}{budget} at δ={delta:g}")


def warning_line(*, round_: int, code: str, message: str) -> str:
    """A warning, as the terminal shows it: one yellow line."""
    where = f"round {round_}" if round_ > 0 else "before round 1"
    return f"[yellow]{escape(f'warning ({where}): {message} [{code}]')}[/]"


def drift_line(*, round_: int, finding: DriftFinding) -> str:
    """A drift event, as the terminal shows it: one magenta line."""
    who = f"learner {finding.learner}" if finding.learner is not None else "global model"
    return (
        f"[magenta]{escape(f'drift (round {round_}): {who} {finding.kind} {finding.feature}')}"
        f"[/] {finding.test} {finding.score:.3g} > {finding.threshold:.3g} vs {finding.reference}"
    )


def alert_line(*, round_: int, name: str, state: str, summary: str) -> str:
    """An alert that began firing (red) or resolved (green), as the terminal shows it."""
    colour = "red" if state == "firing" else "green"
    return f"[{colour}]{escape(f'alert {name} {state} (round {round_}): {summary}')}[/]"


def metrics_line(run_dir: Path) -> str | None:
    """Where the run's metrics are served, if they are."""
    try:
        url = RunDir(run_dir).metrics_url.read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return f"Prometheus metrics at [cyan]{escape(url)}[/]" if url else None


def end_line(status: str, reason: str) -> str:
    """Why a run ended as it did: red for a failure, yellow for a stop or interruption."""
    colour = "red" if status == "failed" else "yellow"
    label = "" if status == "failed" else f"{status}: "
    return f"[{colour}]{escape(label + reason)}[/]"


class LiveView(Callback):
    def __init__(self, console: Console) -> None:
        self.console = console
        self._progress: Progress | None = None
        self._task_id: TaskID | None = None

    def on_run_start(self, *, run: RunInfo) -> None:
        what = "centralized baseline" if run.mode == "centralized" else "federation"
        self.console.print(
            f"[bold]{run.spec.name}[/] {what} · run [cyan]{run.run_id}[/] · "
            f"{run.spec.data.num_learners} learners · {run.spec.rounds} rounds"
            + (f" · resuming at round {run.start_round}" if run.start_round > 1 else "")
        )
        served = metrics_line(run.run_dir) if run.spec.runtime.metrics_port is not None else None
        if served is not None:
            self.console.print(served, soft_wrap=True)
        if self.console.is_terminal:
            self._progress = Progress(
                TextColumn("round"),
                MofNCompleteColumn(),
                BarColumn(),
                TimeElapsedColumn(),
                TextColumn("{task.fields[status]}"),
                console=self.console,
                transient=True,
            )
            self._progress.start()
            self._task_id = self._progress.add_task(
                "rounds", total=run.spec.rounds, completed=run.start_round - 1, status=""
            )

    def on_round_start(self, *, ctx: RoundContext, participants: tuple[LearnerId, ...]) -> None:
        if self._progress is not None and self._task_id is not None:
            self._progress.update(
                self._task_id,
                status=f"training {len(participants)} learners…",
            )

    def on_round_end(self, *, ctx: RoundContext, summary: RoundSummary) -> None:
        line = round_line(
            round_=summary.round,
            total=ctx.total_rounds,
            accepted=len(summary.accepted),
            participants=len(summary.participants),
            problems=len(summary.rejected) + len(summary.failed),
            metrics=summary.global_metrics,
            duration=summary.duration,
            status=summary.status,
            privacy=summary.privacy,
        )
        if self._progress is not None and self._task_id is not None:
            self._progress.update(
                self._task_id, advance=1, status=format_metrics(summary.global_metrics, 2)
            )
            self._progress.console.print(line, soft_wrap=True)
        else:
            self.console.print(line, soft_wrap=True)

    def on_privacy_spent(self, *, round: int, spent: PrivacyLoss) -> None:
        line = privacy_line(
            round_=round, epsilon=spent.epsilon, delta=spent.delta, target=spent.target_epsilon
        )
        console = self._progress.console if self._progress is not None else self.console
        console.print(line, soft_wrap=True)

    def on_drift(self, *, round: int, finding: DriftFinding) -> None:
        console = self._progress.console if self._progress is not None else self.console
        console.print(drift_line(round_=round, finding=finding), soft_wrap=True)

    def on_warning(self, *, round: int, code: str, message: str) -> None:
        line = warning_line(round_=round, code=code, message=message)
        console = self._progress.console if self._progress is not None else self.console
        console.print(line, soft_wrap=True)

    def on_alert(self, *, round: int, alert: Alert) -> None:
        line = alert_line(round_=round, name=alert.name, state=alert.state, summary=alert.summary)
        console = self._progress.console if self._progress is not None else self.console
        console.print(line, soft_wrap=True)

    def on_run_end(self, *, run: RunInfo, result: RunResult) -> None:
        if self._progress is not None:
            self._progress.stop()
        table = Table(title=f"{run.spec.name} · {result.status}", show_header=True)
        table.add_column("")
        table.add_column("value", justify="right")
        table.add_row("rounds completed", f"{result.rounds_completed}/{run.spec.rounds}")
        table.add_row("rollbacks", str(result.rollbacks))
        for key, value in sorted(result.final_metrics.items()):
            table.add_row(key, f"{value:.4f}")
        table.add_row("run directory", str(run.run_dir))
        self.console.print(table)
        if result.error:
            self.console.print(end_line(result.status, result.error), soft_wrap=True)
        if result.tracking_error:
            self.console.print(
                f"[yellow]tracking failed[/]: {result.tracking_error}; the run's own records "
                f"are in {run.run_dir}",
                soft_wrap=True,
            )
        elif run.spec.tracking.enabled:
            from fedpilot.launch import run_tracking_uri  # loaded already: it ran the run

            self.console.print(
                "Open the MLflow UI on this run:\n"
                f"  mlflow ui --backend-store-uri {run_tracking_uri(run.run_dir, run.spec)}"
            )
