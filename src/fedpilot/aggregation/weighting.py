"""Aggregation weights: how much each accepted update counts.

Adaptive weighting (data size × reliability × quality) follows the seed paper's idea of
weighting learners by how much their updates can be trusted, not only by how much data
they claim.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fedpilot.ledger.participation import ParticipationLog
from fedpilot.spec.sections import WeightingSpec
from fedpilot.types import LearnerId, Weights


@dataclass(frozen=True)
class WeightFactors:
    """One update's weight and what it is made of (recorded per round)."""

    weight: float
    data: float
    reliability: float = 1.0
    quality: float = 1.0


ValidationLoss = Callable[[Weights], float]
"""Loss of a model on the server's validation split."""


@dataclass
class UpdateWeighting:
    """Computes each accepted update's aggregation weight.

    Args:
        spec: The spec's ``weighting`` section.
        ledger: The learners' track records (reliability, lateness).
        validation_loss: Loss on the server's validation split, or None without one
            (the quality factor is then 1).
        max_examples_ratio: Bounds one learner's influence on every path, a streaming
            fold included (FedNova's, which the round's cohort checks cannot take an
            update out of): a ``num-examples`` counts at most this many times the median
            of the learners' last accepted counts (the ledger's; none before the first
            accepted round). None: unbounded.
    """

    spec: WeightingSpec
    ledger: ParticipationLog
    validation_loss: ValidationLoss | None = None
    max_examples_ratio: float | None = None
    _global_loss: float | None = field(default=None, init=False)
    _examples_cap: float | None = field(default=None, init=False)

    @property
    def uses_quality(self) -> bool:
        return (
            self.spec.scheme == "adaptive"
            and self.spec.quality
            and self.validation_loss is not None
        )

    def begin_round(self, global_weights: Weights) -> None:
        """Measure the current global model once, the baseline of every quality factor."""
        self._global_loss = None
        self._examples_cap = None
        known = [r.examples for r in self.ledger.records.values() if r.examples > 0]
        if self.max_examples_ratio is not None and known:
            self._examples_cap = self.max_examples_ratio * statistics.median(known)
        if self.uses_quality:
            assert self.validation_loss is not None
            self._global_loss = self.validation_loss(global_weights)

    def weigh(self, learner: LearnerId, num_examples: int, weights: Weights) -> WeightFactors:
        data = float(num_examples)
        if self._examples_cap is not None:
            data = min(data, self._examples_cap)
        if self.spec.scheme == "data_size":
            return WeightFactors(data, data)
        if self.spec.scheme == "uniform":
            return WeightFactors(1.0, data)
        reliability = self.ledger.reliability(learner) * (
            1.0 - self.spec.lateness_penalty * self.ledger.lateness(learner)
        )
        quality = 1.0
        if self.uses_quality and self._global_loss is not None:
            assert self.validation_loss is not None
            loss = self.validation_loss(weights)
            worse = loss - self._global_loss if math.isfinite(loss) else math.inf
            quality = math.exp(-max(0.0, worse) / self.spec.quality_temperature)
        # A floor keeps a weight positive: a round of only distrusted updates still has
        # a defined (if heavily discounted) mean.
        weight = max(data * reliability * quality, 1e-12)
        return WeightFactors(weight, data, reliability, quality)
