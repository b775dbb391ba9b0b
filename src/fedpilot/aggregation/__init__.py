"""Aggregation: streaming aggregators and server optimizers, built from the spec."""

from __future__ import annotations

from fedpilot.aggregation._base import Aggregator, ServerOptimizer
from fedpilot.aggregation.mean import WeightedMean
from fedpilot.aggregation.server_opt import FedAvgStep
from fedpilot.spec.sections import FedAvgStrategy, FedProxStrategy

AGGREGATORS: dict[str, type[Aggregator]] = {"mean": WeightedMean}


def build_server_side(
    strategy: FedAvgStrategy | FedProxStrategy, *, replies_in_order: bool
) -> tuple[Aggregator, ServerOptimizer]:
    """The aggregator and server step for a spec's ``strategy`` section.

    FedProx differs from FedAvg only on the learner side (the proximal term), so both
    aggregate with a weighted mean and step with ``server_lr``. ``replies_in_order``
    comes from the fleet: without it the mean must not depend on arrival order.
    """
    mean = WeightedMean(order_independent=not replies_in_order)
    return mean, FedAvgStep(server_lr=strategy.server_lr)


__all__ = [
    "AGGREGATORS",
    "Aggregator",
    "FedAvgStep",
    "ServerOptimizer",
    "WeightedMean",
    "build_server_side",
]
