"""A transform whose rounds have three exchanges: ``query.hello`` → training →
``query.confirm``; named in a spec as ``phased:ThreePhase``.

Learner half: ``hello`` hands out a nonce (the round) and keeps it in the learner's
state; training goes on as usual; ``confirm`` answers only with the nonce it kept, so
state travels between the phases of one round. Partition ``drop_in_hello`` fails the
first phase, partition ``drop_in_train`` fails its training: it drops between the first
and the last phase.

Server half: records, per round, which learners (by partition) each phase was sent to,
who dropped where, and who confirmed; the record is its checkpointed state.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from fedpilot.orchestrator import Phase
from fedpilot.transforms import (
    Exchange,
    LearnerContext,
    LearnerOutput,
    LocalWork,
    UpdateTransform,
    Work,
)
from fedpilot.types import LearnerId, LearnerState, RoundContext, Update


class ThreePhase(UpdateTransform):
    name = "three_phase"
    actions = ("hello", "confirm")

    def __init__(self, drop_in_hello: int = -1, drop_in_train: int = -1) -> None:
        self.drop_in_hello = drop_in_hello
        self.drop_in_train = drop_in_train
        self.partition: dict[LearnerId, int] = {}
        self.log: dict[str, dict[str, list[int]]] = {}

    # -- learner half --------------------------------------------------------------------

    def on_query(
        self, action: str, request: Exchange, *, state: LearnerState, ctx: LearnerContext
    ) -> Exchange:
        partition = int(ctx.learner)
        if action == "hello":
            if partition == self.drop_in_hello:
                raise RuntimeError("this learner went away before training")
            state["nonce"] = [np.array([ctx.round], np.int64)]
            return Exchange(metrics={"partition": float(partition)})
        kept = state.get("nonce")
        return Exchange(metrics={"nonce": float(kept[0][0]) if kept else -1.0})

    def on_learner(
        self, work: LocalWork, run: Work, *, state: LearnerState, ctx: LearnerContext
    ) -> LearnerOutput:
        if work.kind == "train" and int(ctx.learner) == self.drop_in_train:
            raise RuntimeError("this learner went away during training")
        return run(work)

    # -- server half ---------------------------------------------------------------------

    def phases(self, *, ctx: RoundContext) -> Sequence[Phase]:
        return (_Hello(self), _Confirm(self))

    def on_accepted(self, update: Update, *, ctx: RoundContext) -> None:
        self._note(ctx, "trained", update.learner)

    def _note(self, ctx: RoundContext, what: str, learner: LearnerId) -> None:
        entry = self.log.setdefault(str(ctx.round), {})
        entry.setdefault(what, []).append(self.partition.get(learner, -1))
        entry[what].sort()

    def state_dict(self) -> dict[str, Any]:
        return {"log": self.log, "partition": self.partition}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.log = {r: {k: list(v) for k, v in e.items()} for r, e in state.get("log", {}).items()}
        self.partition = dict(state.get("partition", {}))


class _Hello(Phase):
    kind = "query.hello"

    def __init__(self, owner: ThreePhase) -> None:
        self.owner = owner

    def requests(
        self, *, cohort: Sequence[LearnerId], ctx: RoundContext
    ) -> Mapping[LearnerId, Exchange]:
        self.owner.log.setdefault(str(ctx.round), {})["hello_sent"] = [len(cohort)]
        return dict.fromkeys(cohort, Exchange())

    def take(self, learner: LearnerId, reply: Exchange, *, ctx: RoundContext) -> str | None:
        self.owner.partition[learner] = int(reply.metrics["partition"])
        self.owner._note(ctx, "said_hello", learner)
        return None

    def dropped(self, learner: LearnerId, reason: str, *, ctx: RoundContext) -> None:
        # It never said which partition it is: count it.
        entry = self.owner.log.setdefault(str(ctx.round), {})
        entry["dropped_in_hello"] = [entry.get("dropped_in_hello", [0])[0] + 1]


class _Confirm(Phase):
    kind = "query.confirm"
    after_training = True

    def __init__(self, owner: ThreePhase) -> None:
        self.owner = owner

    def requests(
        self, *, cohort: Sequence[LearnerId], ctx: RoundContext
    ) -> Mapping[LearnerId, Exchange]:
        for learner in cohort:
            self.owner._note(ctx, "confirm_sent", learner)
        return dict.fromkeys(cohort, Exchange())

    def take(self, learner: LearnerId, reply: Exchange, *, ctx: RoundContext) -> str | None:
        if reply.metrics.get("nonce") != float(ctx.round):
            return f"kept nonce {reply.metrics.get('nonce')}, not {ctx.round}"
        self.owner._note(ctx, "confirmed", learner)
        return None
