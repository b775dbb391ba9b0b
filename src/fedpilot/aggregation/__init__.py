"""Aggregation: aggregators (streaming and buffered), rules and server optimizers."""

from __future__ import annotations

from fedpilot.aggregation._base import AggregationReport, Aggregator, ServerOptimizer
from fedpilot.aggregation.buffered import BufferedAggregator
from fedpilot.aggregation.factory import (
    AGGREGATION_RULES,
    build_aggregator,
    build_rule,
    build_server_optimizer,
)
from fedpilot.aggregation.fednova import FedNovaMean
from fedpilot.aggregation.fedopt import AdaptiveStep, FedAdagrad, FedAdam, FedYogi
from fedpilot.aggregation.mean import WeightedMean
from fedpilot.aggregation.rules import (
    AggregationRule,
    Bulyan,
    GeometricMedian,
    Krum,
    Mean,
    Median,
    MultiKrum,
    Rows,
    RuleOutcome,
    TrimmedMean,
)
from fedpilot.aggregation.server_opt import FedAvgM, FedAvgStep
from fedpilot.spec.sections import FedAvgStrategy, FedProxStrategy

AGGREGATORS: dict[str, type[Aggregator]] = {"mean": WeightedMean}
"""Streaming aggregators by name (kept for existing callers; see ``AGGREGATION_RULES``)."""


def build_server_side(
    strategy: FedAvgStrategy | FedProxStrategy, *, replies_in_order: bool
) -> tuple[Aggregator, ServerOptimizer]:
    """The aggregator and server step for a spec's ``strategy`` section.

    FedProx differs from FedAvg only on the learner side (the proximal term), so both
    aggregate with a weighted mean and step with ``server_lr``. ``replies_in_order``
    comes from the fleet: without it the mean must not depend on arrival order.

    Superseded by :func:`build_aggregator` and :func:`build_server_optimizer`.
    """
    mean = WeightedMean(order_independent=not replies_in_order)
    return mean, FedAvgStep(server_lr=strategy.server_lr)


__all__ = [
    "AGGREGATION_RULES",
    "AGGREGATORS",
    "AdaptiveStep",
    "AggregationReport",
    "AggregationRule",
    "Aggregator",
    "BufferedAggregator",
    "Bulyan",
    "FedAdagrad",
    "FedAdam",
    "FedAvgM",
    "FedAvgStep",
    "FedNovaMean",
    "FedYogi",
    "GeometricMedian",
    "Krum",
    "Mean",
    "Median",
    "MultiKrum",
    "Rows",
    "RuleOutcome",
    "ServerOptimizer",
    "TrimmedMean",
    "WeightedMean",
    "build_aggregator",
    "build_rule",
    "build_server_optimizer",
    "build_server_side",
]
