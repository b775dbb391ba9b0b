from __future__ import annotations

import numpy as np
import pytest

from fedpilot.aggregation.scaffold import ScaffoldStep
from fedpilot.learner.protocol import SCAFFOLD_CONTROL, SCAFFOLD_DELTA


def test_server_control_moves_by_the_participating_share_of_the_mean_delta() -> None:
    step = ScaffoldStep(server_lr=0.5, num_learners=4)
    current = [np.zeros(2, np.float32)]
    (control,) = step.learner_extras(current)[SCAFFOLD_CONTROL]
    np.testing.assert_array_equal(control, [0, 0])
    step.absorb(
        [
            {SCAFFOLD_DELTA: [np.array([1.0, 2.0], np.float32)]},
            {SCAFFOLD_DELTA: [np.array([3.0, 2.0], np.float32)]},
        ]
    )
    candidate = step.step(current=current, aggregate=[np.array([2.0, 4.0], np.float32)])
    np.testing.assert_allclose(candidate[0], [1.0, 2.0])  # x + 0.5 (mean y - x)
    (control,) = step.learner_extras(candidate)[SCAFFOLD_CONTROL]
    np.testing.assert_allclose(control, [1.0, 1.0])  # (2/4) * mean delta = 0.5 * [2, 2]


def test_state_round_trip_restores_the_control_variate() -> None:
    step = ScaffoldStep(server_lr=1.0, num_learners=2)
    step.learner_extras([np.zeros(3, np.float32)])
    step.absorb([{SCAFFOLD_DELTA: [np.ones(3, np.float32)]}])
    step.step(current=[np.zeros(3, np.float32)], aggregate=[np.ones(3, np.float32)])
    restored = ScaffoldStep(server_lr=1.0, num_learners=2)
    restored.load_state_dict(step.state_dict())
    a = step.learner_extras([np.zeros(3, np.float32)])[SCAFFOLD_CONTROL]
    b = restored.learner_extras([np.zeros(3, np.float32)])[SCAFFOLD_CONTROL]
    np.testing.assert_array_equal(a[0], b[0])


def test_bad_size_is_refused() -> None:
    with pytest.raises(ValueError, match="num_learners"):
        ScaffoldStep(server_lr=1.0, num_learners=0)
