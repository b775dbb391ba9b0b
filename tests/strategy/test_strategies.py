"""Each built-in strategy's self-description, and the spec asking it instead of special cases."""

from __future__ import annotations

from typing import Any, get_args

import pytest

from fedpilot.aggregation import FedAdagrad, FedAdam, FedAvgM, FedAvgStep, FedNovaMean, FedYogi
from fedpilot.errors import SpecError
from fedpilot.spec import validate_spec
from fedpilot.spec.aggregation import AggregationSpec, NormClipSpec
from fedpilot.spec.sections import AnyStrategy
from fedpilot.strategy import STRATEGIES, build_strategy

MINIMAL = {"name": "m", "task": {"name": "digits-mlp"}}

EXPECTED: dict[str, tuple[dict[str, Any], tuple[Any, ...], tuple[str, ...], type]] = {
    # name: (section fields, transforms, required metrics, server step)
    "fedavg": ({"server_lr": 0.5}, (), (), FedAvgStep),
    "fedprox": ({"mu": 0.3}, (("proximal", {"mu": 0.3}),), (), FedAvgStep),
    "fedavgm": ({"momentum": 0.5}, (), (), FedAvgM),
    "fedadam": ({"beta2": 0.9}, (), (), FedAdam),
    "fedyogi": ({"tau": 0.5}, (), (), FedYogi),
    "fedadagrad": ({"beta1": 0.3}, (), (), FedAdagrad),
    "scaffold": ({}, (("scaffold", {}),), (), FedAvgStep),
    "fednova": ({"server_lr": 0.9}, (), ("local_steps",), FedAvgStep),
}


def section(name: str, **fields: Any) -> Any:
    return validate_spec({**MINIMAL, "strategy": {"name": name, **fields}}).strategy


def test_the_spec_union_is_made_of_the_strategies_sections() -> None:
    assert set(STRATEGIES) == set(EXPECTED)
    assert {cls.Params for _, cls in STRATEGIES.items()} == set(get_args(AnyStrategy))


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_strategy_describes_itself(name: str) -> None:
    fields, transforms, metrics, step = EXPECTED[name]
    strategy = build_strategy(section(name, **fields))
    assert strategy.name == name
    assert strategy.transforms() == transforms
    assert strategy.required_metrics() == metrics
    opt = strategy.server_optimizer()
    assert isinstance(opt, step)
    for key, value in fields.items():  # built from its own section, nothing restated
        if hasattr(opt, key):
            assert getattr(opt, key) == value
    assert getattr(opt, "server_lr", None) == strategy.params.server_lr
    own = strategy.aggregator()
    assert isinstance(own, FedNovaMean) if name == "fednova" else own is None


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_conflicts(name: str) -> None:
    strategy = build_strategy(section(name))
    plain = strategy.conflicts(aggregation=AggregationSpec(), cohort_checks=False)
    robust = strategy.conflicts(
        aggregation=AggregationSpec(rule="median", clip=NormClipSpec(bound=1.0)),
        cohort_checks=True,
    )
    assert plain == []
    if name == "fednova":
        assert robust[:2] == ["aggregation.rule='median'", "aggregation.clip"]
        assert "cohort-level update checks" in robust[2]
    else:
        assert robust == []


def test_the_spec_validator_asks_the_strategy() -> None:
    bad = {**MINIMAL, "strategy": {"name": "fednova"}}
    for extra, shown in (
        ({"aggregation": {"rule": "median"}}, "aggregation.rule='median'"),
        ({"aggregation": {"clip": {"bound": 1.0}}}, "aggregation.clip"),
        ({"validation": {"norm_outlier_z": 3.0}}, "validation.norm_outlier_z"),
    ):
        with pytest.raises(SpecError) as info:
            validate_spec({**bad, **extra})
        assert info.value.field == "strategy.name"
        assert shown in str(info.value) and "fednova" in str(info.value)
    # The same combinations are fine for a strategy that does not refuse them.
    validate_spec({**MINIMAL, "strategy": {"name": "fedavg"}, "aggregation": {"rule": "median"}})
