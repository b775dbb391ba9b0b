"""A user's own update transform, named in a spec as ``usertransforms:RoundCounter``.

Learner half: counts the rounds each learner trained in its per-learner state and
reports the count as the ``rounds_trained`` metric; answers ``query.count`` with it.
Server half: sums the counts of accepted updates and scales each round's aggregate by
``shrink`` (a stand-in for a server-side stage such as DP noise), keeping its tallies
in its checkpointed state.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fedpilot.transforms import (
    Exchange,
    LearnerContext,
    LearnerOutput,
    LocalWork,
    UpdateTransform,
    Work,
)
from fedpilot.types import LearnerState, RoundContext, Update, Weights


class RoundCounter(UpdateTransform):
    name = "round_counter"
    actions = ("count",)

    def __init__(self, shrink: float = 1.0) -> None:
        self.shrink = shrink
        self.server_rounds = 0
        self.accepted_rounds = 0.0

    def on_learner(
        self, work: LocalWork, run: Work, *, state: LearnerState, ctx: LearnerContext
    ) -> LearnerOutput:
        if work.kind != "train":
            return run(work)
        count = _count(state) + 1
        state["rounds"] = [np.array([count], np.int64)]
        out = run(work)
        out.metrics["rounds_trained"] = float(count)
        return out

    def on_query(
        self, action: str, request: Exchange, *, state: LearnerState, ctx: LearnerContext
    ) -> Exchange:
        asked = float(request.config.get("plus", 0))
        count = _count(state)
        return Exchange(
            arrays={"rounds": [np.array([count], np.int64)]},
            metrics={"rounds": float(count) + asked, "round": float(ctx.round)},
        )

    def on_accepted(self, update: Update, *, ctx: RoundContext) -> None:
        self.accepted_rounds += update.metrics["rounds_trained"]

    def on_server(self, aggregate: Weights, *, reference: Weights, ctx: RoundContext) -> Weights:
        self.server_rounds += 1
        return [
            (r + (a - r) * np.float32(self.shrink)).astype(a.dtype)
            for a, r in zip(aggregate, reference, strict=True)
        ]

    def state_dict(self) -> dict[str, Any]:
        return {"server_rounds": self.server_rounds, "accepted_rounds": self.accepted_rounds}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.server_rounds = int(state.get("server_rounds", 0))
        self.accepted_rounds = float(state.get("accepted_rounds", 0.0))


def _count(state: LearnerState) -> int:
    kept = state.get("rounds")
    return int(kept[0][0]) if kept else 0
