"""Shared pieces of the aggregation tests: every built-in aggregator by name, and cohorts."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from fedpilot.aggregation import (
    Aggregator,
    Bulyan,
    FedNovaMean,
    GeometricMedian,
    Krum,
    Mean,
    Median,
    MultiKrum,
    RuleAggregator,
    TrimmedMean,
    WeightedMean,
)
from fedpilot.spec.aggregation import NormClipSpec
from fedpilot.types import RoundContext, Update, Weights

CTX = RoundContext(run_id="t", round=1, total_rounds=1, seed=0)

# Small chunks, so every test crosses chunk (and array) boundaries.
CHUNK = 7

AGGREGATORS: dict[str, Callable[[], Aggregator]] = {
    "streaming_mean": lambda: WeightedMean(order_independent=True),
    "fednova": FedNovaMean,
    "mean": lambda: RuleAggregator(Mean(), chunk_size=CHUNK),
    "clipped_mean": lambda: RuleAggregator(
        Mean(), clip=NormClipSpec(quantile=0.5), chunk_size=CHUNK
    ),
    "median": lambda: RuleAggregator(Median(), chunk_size=CHUNK),
    "trimmed_mean": lambda: RuleAggregator(TrimmedMean(0.2), chunk_size=CHUNK),
    "krum": lambda: RuleAggregator(Krum(0.2), chunk_size=CHUNK),
    "multikrum": lambda: RuleAggregator(MultiKrum(0.2), chunk_size=CHUNK),
    "bulyan": lambda: RuleAggregator(Bulyan(0.2), chunk_size=CHUNK),
    "rfa": lambda: RuleAggregator(GeometricMedian(max_iter=50, tol=1e-9), chunk_size=CHUNK),
}
STREAMING = {"streaming_mean", "fednova"}
BUFFERED = sorted(set(AGGREGATORS) - STREAMING)
ROBUST = ["median", "trimmed_mean", "krum", "multikrum", "bulyan", "rfa"]
# Krum-family rules need n ≥ 2f + 3 (Bulyan 4f + 3) updates, even with f = 0.
MIN_UPDATES = {"krum": 3, "multikrum": 3, "bulyan": 3}

SHAPES: list[tuple[int, ...]] = [(3, 4), (5,), ()]


def make_update(learner: str, weights: Weights, num_examples: int, steps: int = 4) -> Update:
    """An update as the orchestrator passes it; FedNova reads ``local_steps``."""
    return Update(learner, weights, num_examples, metrics={"local_steps": float(steps)})


def fold(
    agg: Aggregator,
    reference: Weights,
    cohort: Sequence[tuple[str, Weights, int]],
    order: Sequence[int] | None = None,
) -> Weights:
    """begin, add the cohort (in ``order``), result."""
    agg.begin(reference=reference, ctx=CTX)
    for i in range(len(cohort)) if order is None else order:
        learner, weights, count = cohort[i]
        agg.add(make_update(learner, weights, count))
    return agg.result()


def random_cohort(
    rng: np.random.Generator, size: int, scale: float = 1.0
) -> tuple[Weights, list[tuple[str, Weights, int]]]:
    """A float32 reference and ``size`` updates around it with example counts."""
    reference: Weights = [rng.standard_normal(s).astype(np.float32) for s in SHAPES]
    cohort = [
        (
            f"learner-{i:03d}",
            [(r + scale * rng.standard_normal(r.shape)).astype(np.float32) for r in reference],
            int(rng.integers(1, 1000)),
        )
        for i in range(size)
    ]
    return reference, cohort
