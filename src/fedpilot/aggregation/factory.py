"""Build the aggregator, rule and server optimizer a spec asks for."""

from __future__ import annotations

from pathlib import Path

from fedpilot._imports import import_object
from fedpilot.aggregation._base import Aggregator, ServerOptimizer
from fedpilot.aggregation.fednova import FedNovaMean
from fedpilot.aggregation.fedopt import FedAdagrad, FedAdam, FedYogi
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
from fedpilot.aggregation.server_opt import FedAvgM, FedAvgStep
from fedpilot.errors import SpecError
from fedpilot.spec.aggregation import AggregationSpec
from fedpilot.spec.sections import (
    AnyStrategy,
    FedAdagradStrategy,
    FedAdamStrategy,
    FedAvgMStrategy,
    FedAvgStrategy,
    FedNovaStrategy,
    FedProxStrategy,
    FedYogiStrategy,
    ScaffoldStrategy,
)

AGGREGATION_RULES: dict[str, type[AggregationRule]] = {
    rule.name: rule
    for rule in (Mean, Median, TrimmedMean, Krum, MultiKrum, Bulyan, GeometricMedian)
}
"""Built-in rules by their ``aggregation.rule`` name."""


def build_rule(aggregation: AggregationSpec, *, base_dir: Path | None = None) -> AggregationRule:
    """The rule ``aggregation.rule`` names: a built-in, or a user's ``package.module:Class``.

    Raises:
        SpecError: when a user reference cannot be imported or is not an
            :class:`AggregationRule` subclass.
    """
    name = aggregation.rule
    cls = AGGREGATION_RULES.get(name)
    if cls is None:
        loaded = import_object(name, field="aggregation.rule", base_dir=base_dir)
        if not (isinstance(loaded, type) and issubclass(loaded, AggregationRule)):
            raise SpecError(
                "`aggregation.rule` must name a subclass of "
                f"fedpilot.aggregation.AggregationRule, got rule={name!r} ({loaded!r})",
                field="aggregation.rule",
            )
        cls = loaded
    return cls.from_spec(aggregation)


def build_aggregator(
    aggregation: AggregationSpec,
    strategy: AnyStrategy,
    *,
    replies_in_order: bool,
    cohort_checks: bool = False,
    workdir: Path | None = None,
    base_dir: Path | None = None,
) -> Aggregator:
    """The aggregator for a spec's ``aggregation`` and ``strategy`` sections.

    Args:
        aggregation: The ``aggregation`` section.
        strategy: The ``strategy`` section; FedNova gets its own normalised mean.
        replies_in_order: Whether the fleet delivers replies in a reproducible order;
            without it the streaming mean sums in float64 so its result does not
            depend on arrival order.
        cohort_checks: Whether the orchestrator may :meth:`~Aggregator.exclude` updates
            after seeing the whole cohort; that needs the rule aggregator (updates kept on disk).
        workdir: Folder for the rule aggregator's temporary file.
        base_dir: Folder user code named in the spec is imported from.

    Returns:
        The streaming :class:`WeightedMean` for a plain mean (the fast path),
        :class:`FedNovaMean` for FedNova, else a :class:`RuleAggregator`.

    Raises:
        SpecError: for a combination that is not supported (FedNova with a robust
            rule, clipping or cohort checks) or a bad user rule.
    """
    if isinstance(strategy, FedNovaStrategy):
        unsupported = []
        if aggregation.rule != "mean":
            unsupported.append(f"aggregation.rule={aggregation.rule!r}")
        if aggregation.clip is not None:
            unsupported.append("aggregation.clip")
        if cohort_checks:
            unsupported.append("cohort-level update checks")
        if unsupported:
            raise SpecError(
                f"strategy fednova with {' and '.join(unsupported)} is not supported: "
                "FedNova normalises a streaming weighted mean (use aggregation.rule='mean' "
                "without clip)",
                field="aggregation.rule",
            )
        return FedNovaMean()
    if aggregation.rule == "mean" and aggregation.clip is None and not cohort_checks:
        return WeightedMean(order_independent=not replies_in_order)
    return RuleAggregator(
        build_rule(aggregation, base_dir=base_dir),
        clip=aggregation.clip,
        chunk_size=aggregation.chunk_size,
        workdir=workdir,
    )


def build_server_optimizer(strategy: AnyStrategy) -> ServerOptimizer:
    """The server step of a spec's ``strategy`` section.

    FedAvg, FedProx and SCAFFOLD (whose differences are update transforms:
    ``fedpilot.transforms``) and FedNova (whose difference is in the aggregate) step with
    :class:`FedAvgStep`.
    """
    match strategy:
        case FedAvgStrategy() | FedProxStrategy() | FedNovaStrategy() | ScaffoldStrategy():
            return FedAvgStep(server_lr=strategy.server_lr)
        case FedAvgMStrategy():
            return FedAvgM(server_lr=strategy.server_lr, momentum=strategy.momentum)
        case FedAdamStrategy():
            return FedAdam(
                strategy.server_lr, beta1=strategy.beta1, beta2=strategy.beta2, tau=strategy.tau
            )
        case FedYogiStrategy():
            return FedYogi(
                strategy.server_lr, beta1=strategy.beta1, beta2=strategy.beta2, tau=strategy.tau
            )
        case FedAdagradStrategy():
            return FedAdagrad(strategy.server_lr, beta1=strategy.beta1, tau=strategy.tau)
    raise TypeError(f"unknown strategy section {type(strategy).__name__}")
