"""The ``aggregation`` spec section and the factory that turns it into an aggregator."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from fedpilot.aggregation import (
    FedNovaMean,
    GeometricMedian,
    Krum,
    Mean,
    Median,
    RuleAggregator,
    WeightedMean,
    build_aggregator,
)
from fedpilot.errors import SpecError
from fedpilot.spec.aggregation import AggregationSpec, NormClipSpec
from fedpilot.spec.sections import FedAdamStrategy, FedAvgStrategy, FedNovaStrategy
from fedpilot.strategy import build_strategy


def test_defaults() -> None:
    spec = AggregationSpec()
    assert (spec.rule, spec.trim_fraction, spec.byzantine_fraction) == ("mean", 0.1, 0.2)
    assert (spec.multikrum_m, spec.rfa_max_iter, spec.rfa_tol) == (None, 20, 1e-6)
    assert spec.clip is None and spec.chunk_size == 262_144
    for name, field in AggregationSpec.model_fields.items():
        assert field.description, name


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"rule": "avg"}, "rule='avg'"),
        ({"rule": "pkg.mod"}, "package.module:Class"),
        ({"trim_fraction": 0.5}, "trim_fraction"),
        ({"byzantine_fraction": -0.1}, "byzantine_fraction"),
        ({"multikrum_m": 0}, "multikrum_m"),
        ({"rfa_tol": 0}, "rfa_tol"),
        ({"chunk_size": 0}, "chunk_size"),
        ({"clip": {}}, "exactly one of `bound` and `quantile`, got bound=None, quantile=None"),
        ({"clip": {"bound": 1, "quantile": 0.5}}, "got bound=1.0, quantile=0.5"),
        ({"clip": {"quantile": 0}}, "quantile"),
        ({"clip": {"quantile": 1.5}}, "quantile"),
        ({"clip": {"bound": -1}}, "bound"),
        ({"median": True}, "median"),
    ],
)
def test_bad_values_name_the_field_and_value(raw: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        AggregationSpec.model_validate(raw)


def test_accepts_user_rules_and_both_clip_modes() -> None:
    assert AggregationSpec(rule="my_pkg.rules:Clipped").rule == "my_pkg.rules:Clipped"
    assert NormClipSpec(bound=2.0).bound == 2.0
    assert NormClipSpec(quantile=1.0).quantile == 1.0
    with pytest.raises(ValidationError):
        AggregationSpec().rule = "median"  # type: ignore[misc]  # frozen


def test_plain_mean_streams_and_everything_else_is_buffered(tmp_path: Path) -> None:
    fedavg = build_strategy(FedAvgStrategy())
    plain = build_aggregator(AggregationSpec(), fedavg, replies_in_order=False)
    assert isinstance(plain, WeightedMean) and plain.order_independent
    ordered = build_aggregator(AggregationSpec(), fedavg, replies_in_order=True)
    assert isinstance(ordered, WeightedMean) and not ordered.order_independent

    checked = build_aggregator(
        AggregationSpec(), fedavg, replies_in_order=True, cohort_checks=True, workdir=tmp_path
    )
    assert isinstance(checked, RuleAggregator) and isinstance(checked.rule, Mean)
    assert checked.workdir == tmp_path

    clipped = build_aggregator(
        AggregationSpec(clip=NormClipSpec(bound=1.0), chunk_size=99),
        build_strategy(FedAdamStrategy()),
        replies_in_order=True,
    )
    assert isinstance(clipped, RuleAggregator)
    assert clipped.clip == NormClipSpec(bound=1.0) and clipped.chunk_size == 99

    for rule, cls in (("median", Median), ("krum", Krum), ("rfa", GeometricMedian)):
        agg = build_aggregator(AggregationSpec(rule=rule), fedavg, replies_in_order=True)
        assert isinstance(agg, RuleAggregator) and isinstance(agg.rule, cls)


def test_fednova_gets_its_own_mean_and_refuses_other_rules() -> None:
    nova = build_strategy(FedNovaStrategy())
    assert isinstance(
        build_aggregator(AggregationSpec(), nova, replies_in_order=False), FedNovaMean
    )
    with pytest.raises(
        SpecError, match=r"fednova with aggregation\.rule='median' is not supported"
    ):
        build_aggregator(AggregationSpec(rule="median"), nova, replies_in_order=True)
    with pytest.raises(SpecError, match=r"fednova with aggregation\.clip is not supported"):
        build_aggregator(
            AggregationSpec(clip=NormClipSpec(quantile=0.9)), nova, replies_in_order=True
        )
    with pytest.raises(SpecError, match="cohort-level update checks"):
        build_aggregator(AggregationSpec(), nova, replies_in_order=True, cohort_checks=True)
