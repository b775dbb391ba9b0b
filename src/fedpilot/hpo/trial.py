"""One trial of a study: a whole federation of the spec with the trial's values applied,
its guarded metric reported to the trial after every round.

A trial the pruner gives up on is stopped through the federation's own stop (a callback
returning :class:`Stop`): the run ends ``stopped`` after a whole round, with its
checkpoint and records, and the trial is PRUNED with the rounds it ran.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fedpilot.errors import SpecError
from fedpilot.hpo.space import applied, suggest
from fedpilot.orchestrator.events import Callback, PrivacyLoss, RoundSummary, RunInfo, Stop
from fedpilot.spec import FederationSpec
from fedpilot.types import RoundContext

if TYPE_CHECKING:
    import optuna

RoundObserver = Callable[[int, int, float | None], None]
"""Told (trial number, round, guarded metric) after each round of a trial."""

PARENT_TAG = "mlflow.parentRunId"
"""MLflow's tag that nests a run under another in its UI."""


class TrialFailed(Exception):
    """The trial's federation produced no value to score (the study goes on)."""


@dataclass(frozen=True)
class Objectives:
    """What a trial's federation is scored by."""

    metric: str
    """The guarded metric: reported after each round, the value of a single objective."""
    names: tuple[str, ...] = ()
    """A multi-objective study's metrics (``bytes``, ``epsilon`` or a model metric)."""
    prune: bool = True


class _Reporter(Callback):
    """Reports the guarded metric to the trial after every round; asks the run to stop
    when the trial's pruner gives up on it."""

    def __init__(
        self, trial: optuna.Trial, objectives: Objectives, observe: RoundObserver | None
    ) -> None:
        self.trial = trial
        self.objectives = objectives
        self.observe = observe
        self.rounds = 0
        self.pruned_at: int | None = None
        self.epsilon: float | None = None
        self.run_id: str | None = None

    def on_run_start(self, *, run: RunInfo) -> None:
        self.run_id = run.run_id

    def on_round_end(self, *, ctx: RoundContext, summary: RoundSummary) -> Stop | None:
        self.rounds += 1
        raw = summary.global_metrics.get(self.objectives.metric)
        value = float(raw) if raw is not None and math.isfinite(raw) else None
        if self.observe is not None:
            self.observe(self.trial.number, summary.round, value)
        if value is None or not self.objectives.prune:
            return None
        self.trial.report(value, summary.round)
        if self.trial.should_prune():
            self.pruned_at = summary.round
            return Stop(f"pruned by the study's pruner after round {summary.round}")
        return None

    def on_privacy_spent(self, *, round: int, spent: PrivacyLoss) -> None:
        self.epsilon = spent.epsilon


def run_trial(
    trial: optuna.Trial,
    spec: FederationSpec,
    *,
    objectives: Objectives,
    parent_run_id: str | None = None,
    observe: RoundObserver | None = None,
) -> float | Sequence[float]:
    """Runs ``trial``'s federation and returns its score.

    Raises:
        optuna.TrialPruned: the pruner stopped it (its user attrs say after which round).
        TrialFailed: the values make an invalid spec, the run failed, or it ended
            without the metric to score it.
        KeyboardInterrupt: the run was interrupted (Ctrl-C): the study stops too.
    """
    import optuna

    from fedpilot.launch import run_federation
    from fedpilot.tracking import default_callbacks

    assert spec.tune is not None
    values = suggest(trial, spec.tune.space)
    try:
        trial_spec = applied(spec, values)
    except SpecError as exc:  # a check across fields that only some values fail
        trial.set_user_attr("error", str(exc)[:500])
        raise TrialFailed(f"trial {trial.number}'s values make an invalid spec: {exc}") from None
    # A trial is an experiment, not a model to ship: only the best spec, run as-is,
    # registers its model under the spec's registry.model_name.
    trial_spec = trial_spec.model_copy(
        update={"registry": trial_spec.registry.model_copy(update={"model_name": None})}
    )
    tags = {"fedpilot.trial": str(trial.number), "fedpilot.study": trial.study.study_name}
    if parent_run_id is not None:
        tags[PARENT_TAG] = parent_run_id
    reporter = _Reporter(trial, objectives, observe)
    callbacks = [*default_callbacks(trial_spec, mlflow_tags=tags), reporter]
    result = run_federation(trial_spec, callbacks=callbacks, default_tracking=False)
    trial.set_user_attr("rounds_run", reporter.rounds)
    trial.set_user_attr("status", result.status)
    trial.set_user_attr("run_id", reporter.run_id)
    if result.status == "interrupted":
        raise KeyboardInterrupt
    if reporter.pruned_at is not None:
        trial.set_user_attr("pruned_at", reporter.pruned_at)
        raise optuna.TrialPruned(f"pruned after round {reporter.pruned_at}")
    if result.error:
        trial.set_user_attr("error", result.error[:500])
    if result.status == "failed":
        # Its metrics are those of the model it ended with (the initial one, when every
        # round was rolled back): no score for work the federation did not do.
        raise TrialFailed(f"trial {trial.number}'s run failed: {result.error}")
    scores = []
    for name in objectives.names or (objectives.metric,):
        if name == "bytes":
            score: float | None = float(
                sum(r.bytes_sent + r.bytes_received for r in result.history)
            )
        elif name == "epsilon":
            score = reporter.epsilon
        else:
            score = result.final_metrics.get(name)
        if score is None or not math.isfinite(score):
            raise TrialFailed(
                f"trial {trial.number}'s run ended {result.status} without a finite "
                f"{name!r} ({result.error or 'no error'})"
            )
        scores.append(float(score))
    return scores if objectives.names else scores[0]


__all__ = ["PARENT_TAG", "Objectives", "RoundObserver", "TrialFailed", "run_trial"]
