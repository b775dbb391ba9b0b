"""The simulation section validates its parts and states its defaults."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from fedpilot.spec.simulation import AttackSpec, AvailabilitySpec, SimulationSpec, SpeedSpec


def test_everything_is_off_by_default() -> None:
    spec = SimulationSpec()
    assert spec.speed is spec.availability is spec.stragglers is spec.attack is None
    assert spec.deadline is None and not spec.heterogeneous()
    assert SimulationSpec(deadline=5).heterogeneous()


def test_speed_defaults_and_tiers() -> None:
    speed = SpeedSpec()
    assert speed.distribution == "lognormal" and speed.seconds_per_example == 0.001
    assert speed.latency == 0.0
    tiers = SpeedSpec.model_validate(
        {
            "distribution": "tiers",
            "tiers": [{"share": 0.3, "speed": 0.1}, {"share": 0.7, "speed": 1}],
        }
    )
    assert [t.speed for t in tiers.tiers] == [0.1, 1.0]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"distribution": "tiers"}, "at least one tier"),
        ({"distribution": "tiers", "tiers": [{"share": 0.5, "speed": 1}]}, "sum to 1"),
        ({"tiers": [{"share": 1, "speed": 1}]}, "only applies"),
        ({"distribution": "uniform", "low": 2, "high": 1}, "low"),
        ({"sigma": -1}, "greater than or equal"),
        ({"colour": "red"}, "Extra inputs"),
    ],
)
def test_bad_speed_sections_name_the_rule(raw: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        SpeedSpec.model_validate(raw)


def test_availability_defaults_to_the_stationary_share() -> None:
    assert AvailabilitySpec(mean_on=3, mean_off=1).initial_on() == 0.75
    assert AvailabilitySpec(initial_on_probability=1.0).initial_on() == 1.0


def test_attack_bounds_and_scale_defaults() -> None:
    assert AttackSpec(fraction=0.2, behaviour="scale").effective_scale() == 10.0
    assert AttackSpec(fraction=0.2, behaviour="sign_flip").effective_scale() == 1.0
    assert AttackSpec(fraction=0.2, behaviour="sign_flip", scale=3).effective_scale() == 3.0
    with pytest.raises(ValidationError, match="less than 1"):
        AttackSpec(fraction=1.0, behaviour="gaussian")
    with pytest.raises(ValidationError, match="`z` only applies"):
        AttackSpec(fraction=0.2, behaviour="gaussian", z=1.0)
    with pytest.raises(ValidationError, match="`scale` only applies"):
        AttackSpec(fraction=0.2, behaviour="lie", scale=2.0)


def test_a_yaml_shaped_section_validates() -> None:
    spec = SimulationSpec.model_validate(
        {
            "speed": {"distribution": "uniform", "low": 0.5, "high": 2},
            "availability": {"mean_on": 100, "mean_off": 50},
            "stragglers": {"fraction": 0.5, "policy": "partial"},
            "deadline": 30,
            "attack": {"fraction": 0.1, "behaviour": "lie"},
        }
    )
    assert spec.stragglers is not None and spec.stragglers.policy == "partial"
    assert spec.attack is not None and spec.attack.z is None
    with pytest.raises(ValidationError, match="greater than 0"):
        SimulationSpec(deadline=0)
