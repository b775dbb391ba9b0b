"""The privacy budget as a run observer: ε(δ) after every round, and the stop before the
round that would spend more than ``privacy.target_epsilon``."""

from __future__ import annotations

from fedpilot.orchestrator.events import (
    PRIVACY_BUDGET_SPENT,
    Callback,
    Decision,
    PrivacyLoss,
    RoundSummary,
    RunInfo,
    Stop,
)
from fedpilot.privacy.learner_dp import LearnerDP
from fedpilot.types import RoundContext


class PrivacyBudget(Callback):
    """Tells ``events`` (the run's callbacks: event log, MLflow, live view) what each
    round spent, and asks to stop once the next round would exceed the budget.

    It runs after the round's checkpoint, which holds the accountant: a resumed run
    recomputes the same ε and, if the budget was spent, stops before its first round
    (``launch`` asks :meth:`PrivacyAccountant.exhausted` when it opens the run).
    """

    def __init__(self, dp: LearnerDP, events: Callback) -> None:
        self._dp = dp
        self._events = events

    def on_run_start(self, *, run: RunInfo) -> None:
        # A resumed run whose budget is spent runs no round: say why (the audit log
        # records budget stops from this warning).
        reason = self._dp.accountant.exhausted()
        if reason is not None:
            self._events.on_warning(
                round=run.start_round, code=PRIVACY_BUDGET_SPENT, message=reason
            )

    def on_round_end(self, *, ctx: RoundContext, summary: RoundSummary) -> Decision | None:
        accountant = self._dp.accountant
        spent = PrivacyLoss(
            epsilon=accountant.epsilon(),
            delta=accountant.delta,
            rounds=accountant.rounds,
            noise_multiplier=accountant.noise_multiplier,
            clip_norm=self._dp.clip,
            target_epsilon=accountant.target_epsilon,
        )
        self._events.on_privacy_spent(round=summary.round, spent=spent)
        reason = accountant.exhausted()
        if reason is not None and summary.round < ctx.total_rounds:
            self._events.on_warning(round=summary.round, code=PRIVACY_BUDGET_SPENT, message=reason)
            return Stop(reason)
        return None
