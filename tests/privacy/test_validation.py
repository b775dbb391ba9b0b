from __future__ import annotations

import numpy as np
import pytest

from fedpilot.privacy import UpdateValidator
from fedpilot.types import Reply

REF = [np.zeros((2, 3), np.float32), np.zeros(3, np.float32)]


def reply(weights: list[np.ndarray], n: object = 10) -> Reply:
    return Reply(learner="0", kind="train", weights=weights, num_examples=n)  # type: ignore[arg-type]


def test_sane_update_passes() -> None:
    check = UpdateValidator().check(reply([a + 1 for a in REF]), REF)
    assert check.ok and check.num_examples == 10


@pytest.mark.parametrize(
    ("weights", "n", "reason"),
    [
        ([np.zeros((3, 2), np.float32), REF[1]], 10, "shape"),
        ([REF[0].astype(np.float64), REF[1]], 10, "dtype"),
        ([REF[0]], 10, "1 arrays"),
        ([np.full((2, 3), np.nan, np.float32), REF[1]], 10, "6 non-finite"),
        ([REF[0], np.array([0, np.inf, 0], np.float32)], 10, "non-finite"),
        (REF, 0, "positive integer"),
        (REF, -3, "positive integer"),
        (REF, 2.5, "positive integer"),
        (REF, True, "positive integer"),
        (REF, None, "positive integer"),
        (REF, "10", "positive integer"),
    ],
)
def test_bad_updates_are_rejected_with_reason(weights: list, n: object, reason: str) -> None:  # type: ignore[type-arg]
    check = UpdateValidator().check(reply(weights, n), REF)
    assert not check.ok
    assert check.reason is not None and reason in check.reason


def test_integral_float_count_is_accepted() -> None:
    assert UpdateValidator().check(reply(REF, 12.0), REF).num_examples == 12
