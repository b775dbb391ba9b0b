"""Aggregation: aggregators (streaming and buffered), rules and server optimizers."""

from __future__ import annotations

from fedpilot.aggregation._base import AggregationReport, Aggregator, ServerOptimizer
from fedpilot.aggregation.factory import (
    AGGREGATION_RULES,
    build_aggregator,
    build_rule,
)
from fedpilot.aggregation.fednova import FedNovaMean
from fedpilot.aggregation.fedopt import AdaptiveStep, FedAdagrad, FedAdam, FedYogi
from fedpilot.aggregation.mean import WeightedMean
from fedpilot.aggregation.rule_aggregator import RuleAggregator
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
from fedpilot.aggregation.server_opt import FedAvgM, FedAvgStep, PerArrayStep

__all__ = [
    "AGGREGATION_RULES",
    "AdaptiveStep",
    "AggregationReport",
    "AggregationRule",
    "Aggregator",
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
    "PerArrayStep",
    "Rows",
    "RuleAggregator",
    "RuleOutcome",
    "ServerOptimizer",
    "TrimmedMean",
    "WeightedMean",
    "build_aggregator",
    "build_rule",
]
