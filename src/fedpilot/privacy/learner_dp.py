"""DP-FedAvg: clip every update's delta, add Gaussian noise to the sum, adapt the clip.

One :class:`~fedpilot.transforms.UpdateTransform` holds both halves (McMahan et al. 2018;
adaptive clipping after Andrew et al. 2021):

- ``central``: the server clips each accepted update (:meth:`before_fold`) and adds
  ``N(0, (z·C)²)`` to the sum of the clipped deltas (:meth:`on_server`).
- ``distributed``: each learner clips its own delta and adds ``N(0, (z·C)²/n)``, so the
  sum of ``n`` learners' noise has the central std and, under secure aggregation, the
  server never holds an un-noised sum; the server adds nothing to the update.

Either way the mean divides the noised sum by the fixed cohort size ``n`` (not by the
updates that arrived), so one learner changes it by at most ``C/n`` and the noise on
the mean is ``z·C/n``: what the accountant is told. Adaptive clipping moves ``C`` by
``exp(-clip_lr·(b̄ - target_quantile))`` where ``b̄`` is the noised share of unclipped
updates; that count's noise takes part of the accounted ``z``, so the update's own noise
is ``z_Δ = (z⁻² - (2σ_b)⁻²)^-1/2`` (the paper's split) and the two compose to exactly ``z``.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any, Literal

import numpy as np

from fedpilot.privacy.accountant import PrivacyAccountant
from fedpilot.transforms._base import (
    LearnerContext,
    LearnerOutput,
    LocalWork,
    UpdateTransform,
    Work,
)
from fedpilot.transforms._registry import TRANSFORMS
from fedpilot.types import LearnerId, LearnerState, RoundContext, Update, Weights, derive_rng

CLIP = "privacy.clip"
"""The extra that carries the current clip norm to the learners (distributed mode)."""
UNCLIPPED = "privacy.unclipped"
"""The metric saying whether an update's delta was within the clip (1) or not (0)."""


@TRANSFORMS.register("learner_dp")
class LearnerDP(UpdateTransform):
    name = "learner_dp"

    def __init__(
        self,
        *,
        mode: Literal["central", "distributed"],
        clipping: Literal["fixed", "adaptive"],
        clip_norm: float,
        noise_multiplier: float,
        cohort: int,
        population: int,
        sampling: Literal["fixed_size", "poisson"],
        delta: float,
        target_epsilon: float | None = None,
        target_quantile: float = 0.5,
        clip_lr: float = 0.2,
        clipped_count_stddev: float | None = None,
    ) -> None:
        self.mode = mode
        self.clipping = clipping
        self.clip = float(clip_norm)
        self.cohort = max(1, min(cohort, population))
        self.target_quantile = target_quantile
        self.clip_lr = clip_lr
        self.count_stddev = (
            (clipped_count_stddev if clipped_count_stddev is not None else self.cohort / 20)
            if clipping == "adaptive"
            else None
        )
        self.update_noise = update_noise_multiplier(noise_multiplier, self.count_stddev)
        self.accountant = PrivacyAccountant(
            noise_multiplier=noise_multiplier,
            population=population,
            cohort=self.cohort,
            sampling=sampling,
            delta=delta,
            target_epsilon=target_epsilon,
        )
        self._folded = 0
        self._unclipped = 0.0

    # -- learner half (distributed) ----------------------------------------------------

    def on_learner(
        self, work: LocalWork, run: Work, *, state: LearnerState, ctx: LearnerContext
    ) -> LearnerOutput:
        del state
        if self.mode != "distributed" or work.kind != "train":
            return run(work)
        reference = [np.array(w, copy=True) for w in work.weights]
        out = run(work)
        sent = work.extras.get(CLIP)
        clip = float(sent[0].reshape(-1)[0]) if sent else self.clip
        deltas, within = clipped_deltas(out.weights, reference, clip)
        # The learner's own stream: seeded by its per-round seed, so a run is repeatable.
        rng = np.random.default_rng([int(ctx.config.get("seed", 0)), 0xD1FF])
        std = self.update_noise * clip / math.sqrt(self.cohort)
        noised = [
            (r + d + rng.normal(0.0, std, size=d.shape)).astype(r.dtype) if _floating(r) else w
            for r, d, w in zip(reference, deltas, out.weights, strict=True)
        ]
        metrics = {**out.metrics, UNCLIPPED: float(within)}
        return replace(out, weights=noised, metrics=metrics)

    # -- server half -------------------------------------------------------------------

    def train_extras(
        self, *, learner: LearnerId, weights: Weights, ctx: RoundContext
    ) -> dict[str, Weights]:
        del learner, weights, ctx
        if self.mode != "distributed":
            return {}
        return {CLIP: [np.array([self.clip], dtype=np.float64)]}

    def before_fold(self, update: Update, *, reference: Weights, ctx: RoundContext) -> Update:
        del ctx
        if self.mode != "central":
            return update
        deltas, within = clipped_deltas(update.weights, reference, self.clip)
        weights = [
            (r + d).astype(r.dtype) if _floating(r) else w
            for r, d, w in zip(reference, deltas, update.weights, strict=True)
        ]
        return replace(
            update, weights=weights, metrics={**update.metrics, UNCLIPPED: float(within)}
        )

    def on_accepted(self, update: Update, *, ctx: RoundContext) -> None:
        del ctx
        self._folded += 1
        self._unclipped += float(update.metrics.get(UNCLIPPED, 1.0))

    def on_server(self, aggregate: Weights, *, reference: Weights, ctx: RoundContext) -> Weights:
        folded, self._folded = self._folded, 0
        unclipped, self._unclipped = self._unclipped, 0.0
        rng = derive_rng(ctx.seed, ctx.round, "privacy-noise")
        std = self.update_noise * self.clip if self.mode == "central" else 0.0
        out: Weights = []
        for a, r in zip(aggregate, reference, strict=True):
            if not _floating(r):
                out.append(a)
                continue
            base = np.asarray(r, np.float64)
            total = (np.asarray(a, np.float64) - base) * folded  # the sum of the folded deltas
            if std > 0:
                total = total + rng.normal(0.0, std, size=total.shape)
            out.append((base + total / self.cohort).astype(r.dtype))
        if self.count_stddev is not None:
            share = (unclipped + rng.normal(0.0, self.count_stddev)) / self.cohort
            self.clip *= math.exp(-self.clip_lr * (share - self.target_quantile))
        self.accountant.compose_round()
        return out

    def state_dict(self) -> dict[str, Any]:
        # The accountant is not here: it is registered apart and never rolls back (a
        # rolled-back round's noised model was still released to the evaluation).
        return {"clip": self.clip}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "clip" in state:  # a fresh run keeps the spec's clip_norm
            self.clip = float(state["clip"])


def update_noise_multiplier(total: float, count_stddev: float | None) -> float:
    """The update's share of the accounted multiplier ``total`` once the clipped count's
    noise ``count_stddev`` took its part (Andrew et al. 2021, Theorem 1)."""
    if count_stddev is None:
        return total
    return float((total**-2 - (2 * count_stddev) ** -2) ** -0.5)


def clipped_deltas(weights: Weights, reference: Weights, clip: float) -> tuple[list[Any], bool]:
    """``weights - reference`` scaled to an L2 norm of at most ``clip`` (over every float
    array together), and whether it was within the clip already."""
    deltas = [
        np.asarray(w, np.float64) - np.asarray(r, np.float64) if _floating(r) else np.zeros(0)
        for w, r in zip(weights, reference, strict=True)
    ]
    norm = math.sqrt(sum(float(np.vdot(d, d)) for d in deltas))
    if norm <= clip:
        return deltas, True
    return [d * (clip / norm) for d in deltas], False


def _floating(array: Any) -> bool:
    return bool(np.issubdtype(np.asarray(array).dtype, np.floating))
