"""Availability traces and speeds are pure functions of (seed, learner)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from fedpilot.fleet.simulation import AvailabilityTrace, SpeedModel
from fedpilot.spec.simulation import AvailabilitySpec, SpeedSpec

SPEC = AvailabilitySpec(mean_on=10.0, mean_off=5.0)


def test_a_trace_does_not_depend_on_how_it_is_queried() -> None:
    far = AvailabilityTrace.for_learner(SPEC, 7, "3")
    near = AvailabilityTrace.for_learner(SPEC, 7, "3")
    assert far.is_on(5000.0) in (True, False)  # generates far ahead first
    times = np.linspace(0, 5000, 2001).tolist()
    assert [near.is_on(t) for t in times] == [far.is_on(t) for t in times]
    other = AvailabilityTrace.for_learner(SPEC, 7, "4")
    assert [other.is_on(t) for t in times] != [far.is_on(t) for t in times]


def test_periods_alternate_and_match_is_on() -> None:
    trace = AvailabilityTrace.for_learner(SPEC, 1, "0")
    periods = trace.on_periods(500.0)
    assert periods and all(a < b for a, b in periods)
    assert all(b1 < a2 for (_, b1), (a2, _) in itertools.pairwise(periods))
    for start, end in periods:
        assert trace.is_on((start + end) / 2)
    for (_, end), (start, _) in itertools.pairwise(periods):
        assert not trace.is_on((end + start) / 2)
        assert trace.next_switch((end + start) / 2) == pytest.approx(start)
        assert trace.first_switch_between(end - 1e-9, start + 1e-9) == pytest.approx(end)


def test_long_run_online_share_is_mean_on_over_the_cycle() -> None:
    shares = []
    for learner in range(40):
        trace = AvailabilityTrace.for_learner(SPEC, 0, str(learner))
        shares.append(sum(b - a for a, b in trace.on_periods(2000.0)) / 2000.0)
    assert np.mean(shares) == pytest.approx(10 / 15, abs=0.04)


def test_initial_state_follows_the_probability() -> None:
    always = AvailabilitySpec(mean_on=1, mean_off=1, initial_on_probability=1.0)
    never = AvailabilitySpec(mean_on=1, mean_off=1, initial_on_probability=0.0)
    assert all(AvailabilityTrace.for_learner(always, 0, str(i)).is_on(0) for i in range(20))
    assert not any(AvailabilityTrace.for_learner(never, 0, str(i)).is_on(0) for i in range(20))


def test_speeds_per_distribution() -> None:
    learners = [str(i) for i in range(200)]
    assert SpeedModel(None, 0, learners).of("5") == 1.0
    uniform = SpeedModel(SpeedSpec(distribution="uniform", low=0.5, high=2.0), 0, learners)
    values = [uniform.of(lid) for lid in learners]
    assert min(values) >= 0.5 and max(values) <= 2.0
    lognormal = SpeedModel(SpeedSpec(sigma=0.5), 0, learners)
    assert np.median([lognormal.of(lid) for lid in learners]) == pytest.approx(1.0, abs=0.15)
    # A learner's speed is its own: neither the order nor the other learners change it.
    again = SpeedModel(SpeedSpec(sigma=0.5), 0, learners[::-1][:3])
    assert again.of("5") == lognormal.of("5")


def test_tiers_split_the_known_learners_exactly() -> None:
    spec = SpeedSpec.model_validate(
        {
            "distribution": "tiers",
            "tiers": [{"share": 0.2, "speed": 0.1}, {"share": 0.8, "speed": 1.0}],
        }
    )
    learners = [str(i) for i in range(10)]
    model = SpeedModel(spec, 3, learners)
    speeds = [model.of(lid) for lid in learners]
    assert speeds.count(0.1) == 2 and speeds.count(1.0) == 8
    assert speeds == [SpeedModel(spec, 3, learners).of(lid) for lid in learners]
    assert model.of("newcomer") in (0.1, 1.0)
