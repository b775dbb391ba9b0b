"""Is this update sane? Checks run before an update is folded into the aggregate."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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
            if np.issubdtype(got.dtype, np.inexact) and not np.isfinite(got).all():
                bad = int(np.size(got) - np.count_nonzero(np.isfinite(got)))
                return Validation(f"array {index} has {bad} non-finite values (NaN or inf)")
        return Validation(None, num_examples)


def _positive_int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, np.integer)):
        return int(value) if value > 0 else None
    if isinstance(value, (float, np.floating)) and float(value).is_integer() and value > 0:
        return int(value)
    return None
