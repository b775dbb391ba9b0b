"""Level-1 BLAS on numpy arrays: ``y += a·x`` in place, and ``x·x``, one call per array.

numpy has no in-place scaled add (``y += a * x`` first allocates ``a * x``) and torch's
dispatch costs more than the arithmetic on a small model's arrays; BLAS does either in
one pass over the data with no temporary. Every model update goes through both (the
validator's finiteness check, the weighted mean's fold), so this is on the hot path of
every round.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.linalg import blas

_AXPY: dict[np.dtype[Any], Any] = {
    np.dtype(np.float32): blas.saxpy,
    np.dtype(np.float64): blas.daxpy,
}
_DOT: dict[np.dtype[Any], Any] = {
    np.dtype(np.float32): blas.sdot,
    np.dtype(np.float64): blas.ddot,
}


def add_scaled(total: npt.NDArray[np.floating[Any]], x: npt.NDArray[Any], alpha: float) -> None:
    """``total += alpha * x`` in place.

    ``total`` must be a 1-D, C-contiguous float32 or float64 array; ``x`` has as many
    elements, in any shape and dtype (it is converted to ``total``'s dtype first, so a
    float32 update times an integer weight is exact in a float64 total).
    """
    if x.dtype != total.dtype:
        x = x.astype(total.dtype)
    n = total.size
    if n == 0:
        return  # BLAS refuses empty vectors
    # Positional arguments: f2py's keyword parsing costs more than the arithmetic here.
    out = _AXPY[total.dtype](x.ravel(), total, n, alpha)
    if out is not total:  # BLAS worked on a copy (cannot happen for a valid total)
        total[...] = out


def all_finite(array: npt.NDArray[Any]) -> bool:
    """Whether no element of ``array`` is NaN or infinite."""
    dot = _DOT.get(array.dtype)
    if dot is not None and array.size:
        # A NaN or inf anywhere makes the sum of squares non-finite, and one BLAS call
        # decides it without a temporary mask. Only a non-finite sum (which may be an
        # overflow of large finite squares) takes the exact element-wise check.
        flat = array.ravel()
        if math.isfinite(dot(flat, flat)):
            return True
    elif array.dtype.kind not in "fc":
        return True  # integers and booleans are always finite
    return bool(np.isfinite(array).all())
