"""Aggregation rules: each combines a round's deltas, kept on disk, read in column chunks."""

from __future__ import annotations

from fedpilot.aggregation.rules._base import AggregationRule, Rows, RuleOutcome
from fedpilot.aggregation.rules.bulyan import Bulyan
from fedpilot.aggregation.rules.krum import ByzantineRule, Krum, MultiKrum
from fedpilot.aggregation.rules.mean import Mean
from fedpilot.aggregation.rules.median import Median
from fedpilot.aggregation.rules.rfa import GeometricMedian
from fedpilot.aggregation.rules.trimmed_mean import TrimmedMean

__all__ = [
    "AggregationRule",
    "Bulyan",
    "ByzantineRule",
    "GeometricMedian",
    "Krum",
    "Mean",
    "Median",
    "MultiKrum",
    "Rows",
    "RuleOutcome",
    "TrimmedMean",
]
