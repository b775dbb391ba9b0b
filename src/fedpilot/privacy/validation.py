"""Is this update sane? Checks run before an update is folded into the aggregate."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from fedpilot.types import Reply, Weights


@dataclass(frozen=True)
class Validation:
    """``reason`` is None when the update may be folded in."""

    reason: str | None
    num_examples: int = 0

    @property
    def ok(self) -> bool:
        return self.reason is None


class UpdateValidator:
    """Shape and dtype match the global model, every value is finite, and
    ``num-examples`` is a positive integer."""

    def check(self, reply: Reply, reference: Weights) -> Validation:
        num_examples = _positive_int(reply.num_examples)
        if num_examples is None:
            return Validation(
                f"`num-examples` must be a positive integer, got {reply.num_examples!r}"
            )
        if len(reply.weights) != len(reference):
            return Validation(
                f"update has {len(reply.weights)} arrays, the global model has {len(reference)}"
            )
        for index, (got, want) in enumerate(zip(reply.weights, reference, strict=True)):
            if got.shape != want.shape:
                return Validation(
                    f"array {index} has shape {got.shape}, the global model's is {want.shape}"
                )
            if got.dtype != want.dtype:
                return Validation(
                    f"array {index} has dtype {got.dtype}, the global model's is {want.dtype}"
                )
            if got.dtype.kind in "fc" and not _all_finite(got):
                bad = int(np.size(got) - np.count_nonzero(np.isfinite(got)))
                return Validation(f"array {index} has {bad} non-finite values (NaN or inf)")
        return Validation(None, num_examples)


def _all_finite(array: npt.NDArray[np.generic]) -> bool:
    # A NaN or inf anywhere makes the sum non-finite, and a float64 sum of float32 values
    # cannot overflow, so one reduction without a temporary mask decides the usual case;
    # only a non-finite sum (which may be an overflow of large finite float64 values)
    # takes the exact element-wise check.
    if array.dtype.kind == "f" and math.isfinite(array.sum(dtype=np.float64)):
        return True
    return bool(np.isfinite(array).all())


def _positive_int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, np.integer)):
        return int(value) if value > 0 else None
    if isinstance(value, (float, np.floating)) and float(value).is_integer() and value > 0:
        return int(value)
    return None
