"""``drift``: learners summarize their data for the server, with their training reply.

Why the training reply and not a phase of its own (``query.<action>``, as secure
aggregation does): a summary describes the data the learner is training on anyway, so it
rides on the exchange that already happens (no extra round trip, nothing to wait for),
and a learner whose summary cannot be read keeps its update (a failed phase would drop it
from the round). It travels as an extra, so ``sys.bytes_sent`` and the rounds' bytes count
it, and the server half takes it off in ``on_reply``, before validation.

The server decides who summarizes when (``train_extras`` marks the instruction): a
learner with no reference yet, or whose last summary is ``every`` rounds old. With
model drift on, every learner also evaluates the model it receives on its own data
before training and reports it as ``drift.local.<metric>``.

What the server learns is kept in :class:`DriftState`, registered as ``drift`` and
checkpointed, but not rolled back with a rolled-back round: the data was observed all
the same (drift is a likely cause of a rollback). :class:`~fedpilot.drift.watch.DriftWatch`
runs the tests after each round.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any, ClassVar

import numpy as np

from fedpilot.data._base import ArrayDataset
from fedpilot.drift.summary import DataSummary, from_arrays, summarize
from fedpilot.transforms._base import (
    LearnerContext,
    LearnerOutput,
    LocalWork,
    UpdateTransform,
    Work,
)
from fedpilot.transforms._registry import TRANSFORMS
from fedpilot.types import LearnerId, LearnerState, Reply, RoundContext, Weights, derive_rng

ASK = "drift/ask"
"""The train instruction's extra: [summarize?, evaluate?] as two uint8."""
SUMMARY = "drift/summary"
"""The training reply's extra: the learner's data summary."""
LOCAL = "drift.local."
"""Reply metrics: the received model evaluated on the learner's own training data."""

# One array object per request: the round ships identical extras once (RayFleet).
_REQUESTS: dict[tuple[int, int], Weights] = {
    (s, e): [np.array([s, e], dtype=np.uint8)] for s in (0, 1) for e in (0, 1) if s or e
}


class DriftState:
    """Every learner's reference (first) summary, its latest one, and its recent own
    evaluations: what the drift tests compare. Checkpointed as ``drift``."""

    def __init__(self, keep: int = 16) -> None:
        self.keep = keep
        self.references: dict[LearnerId, tuple[int, DataSummary]] = {}
        self.latest: dict[LearnerId, tuple[int, DataSummary]] = {}
        self.local: dict[LearnerId, list[tuple[int, float]]] = {}
        self.problems: list[tuple[int, str]] = []
        """Summaries refused since the drift watch last looked (not checkpointed)."""

    def due(self, learner: LearnerId, round_: int, every: int) -> bool:
        last = self.latest.get(learner)
        return last is None or round_ - last[0] >= every

    def take_summary(self, learner: LearnerId, round_: int, summary: DataSummary) -> None:
        self.references.setdefault(learner, (round_, summary))
        self.latest[learner] = (round_, summary)

    def take_local(self, learner: LearnerId, round_: int, value: float) -> None:
        series = [p for p in self.local.get(learner, []) if p[0] != round_]
        self.local[learner] = [*series, (round_, value)][-self.keep :]

    def state_dict(self) -> dict[str, Any]:
        def summaries(table: dict[LearnerId, tuple[int, DataSummary]]) -> dict[str, Any]:
            return {k: {"round": r, "arrays": s.to_arrays()} for k, (r, s) in table.items()}

        return {
            "references": summaries(self.references),
            "latest": summaries(self.latest),
            "local": {k: [[r, v] for r, v in series] for k, series in self.local.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        def summaries(table: dict[str, Any]) -> dict[LearnerId, tuple[int, DataSummary]]:
            return {k: (int(e["round"]), from_arrays(list(e["arrays"]))) for k, e in table.items()}

        self.references = summaries(state.get("references", {}))
        self.latest = summaries(state.get("latest", {}))
        self.local = {
            k: [(int(r), float(v)) for r, v in series]
            for k, series in state.get("local", {}).items()
        }
        self.problems = []


@TRANSFORMS.register("drift")
class DriftMonitor(UpdateTransform):
    """Both halves of the data summaries (the spec's ``drift`` section)."""

    name: ClassVar[str] = "drift"

    def __init__(
        self,
        *,
        every: int = 5,
        max_features: int = 64,
        quantiles: int = 9,
        noise: float = 0.0,
        metric: str | None = "accuracy",
        window: int = 8,
    ) -> None:
        self.every = every
        self.max_features = max_features
        self.quantiles = quantiles
        self.noise = noise
        self.metric = metric
        """The metric each learner's own evaluation is kept for; None: no evaluation."""
        self.state = DriftState(keep=window + 1)

    # -- learner half ---------------------------------------------------------------

    def on_learner(
        self, work: LocalWork, run: Work, *, state: LearnerState, ctx: LearnerContext
    ) -> LearnerOutput:
        del state
        asked = work.extras.pop(ASK, None)
        if work.kind != "train" or not asked:
            return run(work)
        wants_summary, wants_evaluation = (bool(f) for f in np.asarray(asked[0]).reshape(-1)[:2])
        local: dict[str, float] = {}
        if wants_evaluation and ctx.task is not None:
            ctx.task.set_weights(work.weights)
            local = {LOCAL + k: float(v) for k, v in ctx.task.evaluate(work.data).items()}
        summary: Weights | None = None
        if wants_summary and isinstance(work.data, ArrayDataset):
            rng = derive_rng(int(work.config.get("seed", 0)), ctx.round, "drift-noise")
            summary = summarize(
                work.data.x,
                work.data.y,
                max_features=self.max_features,
                quantiles=self.quantiles,
                noise=self.noise,
                rng=rng,
            ).to_arrays()
        out = run(work)
        out.metrics = {**out.metrics, **local}
        if summary is not None:
            out.extras = {**out.extras, SUMMARY: summary}
        return out

    # -- server half ----------------------------------------------------------------

    def train_extras(
        self, *, learner: LearnerId, weights: Weights, ctx: RoundContext
    ) -> dict[str, Weights]:
        del weights
        request = (
            int(self.state.due(learner, ctx.round, self.every)),
            int(self.metric is not None),
        )
        return {ASK: _REQUESTS[request]} if any(request) else {}

    def on_reply(self, reply: Reply, *, reference: Weights, ctx: RoundContext) -> Reply:
        del reference
        if reply.kind != "train" or not reply.ok:
            return reply
        if self.metric is not None:
            value = reply.metrics.get(LOCAL + self.metric)
            if isinstance(value, float | int) and math.isfinite(value):
                self.state.take_local(reply.learner, ctx.round, float(value))
        arrays = reply.extras.get(SUMMARY)
        if arrays is None:
            return reply
        try:
            summary = from_arrays(arrays, max_features=self.max_features)
            self.state.take_summary(reply.learner, ctx.round, summary)
        except ValueError as exc:  # the update itself may be fine: only the summary is lost
            self.state.problems.append((ctx.round, f"learner {reply.learner}'s {exc}"))
        return replace(reply, extras={k: v for k, v in reply.extras.items() if k != SUMMARY})


def drift_monitor(transforms: Any) -> DriftMonitor | None:
    """The run's drift monitor among its transforms, if the spec turned it on."""
    return next((t for t in transforms if isinstance(t, DriftMonitor)), None)
