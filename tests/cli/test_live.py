"""The terminal view shows the privacy spent: learner-level ε(δ) after each round (and its
budget), and DP-SGD's record-level ε on the round's line."""

from __future__ import annotations

import io

from rich.console import Console

from fedpilot.cli.live import LiveView
from fedpilot.orchestrator.events import PrivacyLoss, RoundSummary
from fedpilot.types import RoundContext


def view() -> tuple[LiveView, io.StringIO]:
    out = io.StringIO()
    return LiveView(Console(file=out, width=200, force_terminal=False)), out


def summary(privacy: dict[str, float]) -> RoundSummary:
    return RoundSummary(
        round=2,
        status="completed",
        participants=("0", "1"),
        accepted=("0", "1"),
        rejected={},
        failed={},
        train_loss=0.5,
        candidate_metrics={"accuracy": 0.9},
        global_metrics={"accuracy": 0.9},
        learner_metrics={},
        duration=1.0,
        bytes_sent=1,
        bytes_received=1,
        privacy=privacy,
    )


def test_learner_level_epsilon_and_its_budget_are_shown() -> None:
    live, out = view()
    spent = PrivacyLoss(
        epsilon=1.2345, delta=1e-5, rounds=3, noise_multiplier=1.0, clip_norm=0.5, target_epsilon=4
    )
    live.on_privacy_spent(round=3, spent=spent)
    assert "privacy (round 3): ε=1.23 of 4 at δ=1e-05" in out.getvalue()


def test_the_round_line_shows_record_level_epsilon_only_under_dpsgd() -> None:
    ctx = RoundContext(run_id="r", round=2, total_rounds=5, seed=0)
    live, out = view()
    live.on_round_end(ctx=ctx, summary=summary({"privacy.sample_epsilon": 2.718}))
    live.on_round_end(ctx=ctx, summary=summary({}))
    with_dp, without = out.getvalue().splitlines()
    assert "round   2/5  2/2 accepted" in with_dp and "record-level ε=2.72" in with_dp
    assert "ε" not in without
