from __future__ import annotations

import math

import numpy as np
import pytest

from fedpilot.aggregation.weighting import UpdateWeighting
from fedpilot.ledger import LearnerOutcome, ParticipationLog
from fedpilot.spec.sections import WeightingSpec

W = [np.zeros(3, np.float32)]


def test_data_size_and_uniform_schemes() -> None:
    ledger = ParticipationLog()
    assert UpdateWeighting(WeightingSpec(), ledger).weigh("a", 30, W).weight == 30.0
    uniform = UpdateWeighting(WeightingSpec(scheme="uniform"), ledger).weigh("a", 30, W)
    assert uniform.weight == 1.0 and uniform.data == 30.0


def test_adaptive_weight_is_data_times_reliability_times_quality() -> None:
    ledger = ParticipationLog()
    ledger.update(1, {"a": LearnerOutcome("a", "accepted", duration=2.0, deadline=10.0)})
    # Validation loss: the distance of the single weight from 0 (the global model).
    weighting = UpdateWeighting(
        WeightingSpec(scheme="adaptive", lateness_penalty=0.5, quality_temperature=0.1),
        ledger,
        validation_loss=lambda weights: float(np.abs(weights[0]).sum()),
    )
    weighting.begin_round(W)
    better = weighting.weigh("a", 10, W)
    reliability = (1 + 1) / (1 + 2) * (1 - 0.5 * 0.2)
    assert better.reliability == pytest.approx(reliability)
    assert better.quality == 1.0  # no worse than the global model
    assert better.weight == pytest.approx(10 * reliability)
    worse = weighting.weigh("a", 10, [np.full(3, 0.1, np.float32)])
    assert worse.quality == pytest.approx(math.exp(-0.3 / 0.1), rel=1e-5)
    assert worse.weight < better.weight


def test_adaptive_without_validation_data_has_quality_one() -> None:
    weighting = UpdateWeighting(WeightingSpec(scheme="adaptive"), ParticipationLog())
    weighting.begin_round(W)
    factors = weighting.weigh("new", 8, W)
    assert not weighting.uses_quality and factors.quality == 1.0
    assert factors.weight == pytest.approx(8 * 0.5)  # a newcomer's reliability is 1/2
