"""Build the aggregator and rule a spec asks for."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from fedpilot.aggregation._base import Aggregator
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
    TrimmedMean,
)
from fedpilot.errors import SpecError
from fedpilot.registry import Registry
from fedpilot.spec.aggregation import AggregationSpec

if TYPE_CHECKING:
    from fedpilot.strategy import Strategy

AGGREGATION_RULES: Registry[AggregationRule] = Registry(
    "aggregation rule", AggregationRule, field="aggregation.rule"
)
"""Built-in rules by their ``aggregation.rule`` name."""
for _rule in (Mean, Median, TrimmedMean, Krum, MultiKrum, Bulyan, GeometricMedian):
    AGGREGATION_RULES.add(_rule.name, _rule)


def build_rule(aggregation: AggregationSpec, *, base_dir: Path | None = None) -> AggregationRule:
    """The rule ``aggregation.rule`` names (a built-in or a user's ``package.module:Class``),
    built from the ``aggregation`` section by its :meth:`~AggregationRule.from_spec`.

    Raises:
        SpecError: when the name cannot be resolved to a concrete :class:`AggregationRule`.
    """
    return AGGREGATION_RULES.resolve(aggregation.rule, base_dir=base_dir).from_spec(aggregation)


def build_aggregator(
    aggregation: AggregationSpec,
    strategy: Strategy[Any],
    *,
    replies_in_order: bool,
    cohort_checks: bool = False,
    workdir: Path | None = None,
    base_dir: Path | None = None,
) -> Aggregator:
    """The aggregator for a spec's ``aggregation`` section and its strategy.

    Args:
        aggregation: The ``aggregation`` section.
        strategy: The run's strategy; one with its own fold (FedNova) gets it.
        replies_in_order: Whether the fleet delivers replies in a reproducible order;
            without it the streaming mean sums in float64 so its result does not
            depend on arrival order.
        cohort_checks: Whether the orchestrator may :meth:`~Aggregator.exclude` updates
            after seeing the whole cohort; that needs the rule aggregator (updates kept on disk).
        workdir: Folder for the rule aggregator's temporary file.
        base_dir: Folder user code named in the spec is imported from.

    Returns:
        The strategy's own aggregator, the streaming :class:`WeightedMean` for a plain
        mean (the fast path), else a :class:`RuleAggregator`.

    Raises:
        SpecError: for a combination the strategy cannot run with, or a bad user rule.
    """
    refusal = strategy.incompatibility(aggregation=aggregation, cohort_checks=cohort_checks)
    if refusal is not None:
        raise SpecError(refusal, field="strategy.name")
    own = strategy.aggregator()
    if own is not None:
        return own
    if aggregation.rule == "mean" and aggregation.clip is None and not cohort_checks:
        return WeightedMean(order_independent=not replies_in_order)
    return RuleAggregator(
        build_rule(aggregation, base_dir=base_dir),
        clip=aggregation.clip,
        chunk_size=aggregation.chunk_size,
        workdir=workdir,
    )
