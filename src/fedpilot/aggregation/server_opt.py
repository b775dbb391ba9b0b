"""Server optimizers without adaptivity: FedAvg's step and server momentum (FedAvgM)."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from fedpilot.aggregation._base import ServerOptimizer
from fedpilot.types import Weights

StateArrays = dict[int, npt.NDArray[np.floating[Any]]]


def check_pair(current: Weights, aggregate: Weights) -> None:
    """Raise ValueError unless the two models have the same number and shapes of arrays."""
    if len(current) != len(aggregate):
        raise ValueError(f"aggregate has {len(aggregate)} arrays, the current model {len(current)}")
    for index, (x, a) in enumerate(zip(current, aggregate, strict=True)):
        if x.shape != a.shape:
            raise ValueError(
                f"aggregate array {index} has shape {a.shape}, the current model {x.shape}"
            )


class FedAvgStep(ServerOptimizer):
    """``w ← w + server_lr · (aggregate − w)``; with server_lr = 1 the aggregate itself."""

    def __init__(self, server_lr: float = 1.0) -> None:
        if server_lr <= 0:
            raise ValueError(f"`server_lr` must be > 0, got server_lr={server_lr}")
        self.server_lr = server_lr

    def step(self, *, current: Weights, aggregate: Weights) -> Weights:
        check_pair(current, aggregate)
        if self.server_lr == 1.0:
            return [a.copy() for a in aggregate]
        out: Weights = []
        for w, a in zip(current, aggregate, strict=True):
            if np.issubdtype(w.dtype, np.floating):
                current_ = w.astype(np.float64)
                moved = current_ + self.server_lr * (a.astype(np.float64) - current_)
                out.append(moved.astype(w.dtype))
            else:  # counters and other integer buffers follow the aggregate
                out.append(a.copy())
        return out


def work_dtype(dtype: np.dtype[Any]) -> np.dtype[Any]:
    """The dtype optimizer state and arithmetic use: the parameter's, at least float32."""
    return np.promote_types(dtype, np.float32)


def pack_state(prefix: str, arrays: StateArrays) -> dict[str, Any]:
    """``{"<prefix>.<index>": copy}``; copies, so later steps cannot alter a saved state."""
    return {f"{prefix}.{i}": a.copy() for i, a in sorted(arrays.items())}


def unpack_state(state: dict[str, Any], prefixes: tuple[str, ...]) -> dict[str, StateArrays]:
    """Inverse of :func:`pack_state` for several prefixes; scalars are left to the caller.

    Raises:
        ValueError: for a key that is neither ``<prefix>.<int>`` nor ``steps``.
    """
    found: dict[str, StateArrays] = {p: {} for p in prefixes}
    for key, value in state.items():
        if key == "steps":
            continue
        prefix, _, index = key.partition(".")
        if prefix not in found or not index.isdigit():
            raise ValueError(
                f"unknown server optimizer state key {key!r}; expected "
                f"{' or '.join(p + '.<i>' for p in prefixes)} or 'steps'"
            )
        found[prefix][int(index)] = np.array(value, copy=True)
    return found


class FedAvgM(ServerOptimizer):
    """Server momentum (Hsu et al. 2019): ``m ← β·m + Δ``, ``x ← x + η·m``, ``Δ = aggregate − x``.

    With ``β = 0`` and ``η = 1`` it is FedAvg. Integer arrays follow the aggregate.
    State (momentum per floating array) is kept in the parameter's dtype, at least
    float32, so a checkpointed run continues bit for bit.

    Args:
        server_lr: ``η``, > 0.
        momentum: ``β``, in ``[0, 1)``.
    """

    def __init__(self, server_lr: float = 1.0, momentum: float = 0.9) -> None:
        if server_lr <= 0:
            raise ValueError(f"`server_lr` must be > 0, got server_lr={server_lr}")
        if not 0 <= momentum < 1:
            raise ValueError(f"`momentum` must be in [0, 1), got momentum={momentum}")
        self.server_lr = server_lr
        self.momentum = momentum
        self._m: StateArrays = {}
        self._steps = 0

    def step(self, *, current: Weights, aggregate: Weights) -> Weights:
        check_pair(current, aggregate)
        momenta: StateArrays = {}
        out: Weights = []
        for i, (x, a) in enumerate(zip(current, aggregate, strict=True)):
            if x.dtype.kind != "f":
                out.append(a.copy())
                continue
            work = work_dtype(x.dtype)
            delta = np.subtract(a, x, dtype=work)
            previous = self._m.get(i)
            m = delta if previous is None else self.momentum * previous + delta
            momenta[i] = m
            out.append(np.add(x, self.server_lr * m, dtype=work).astype(x.dtype, copy=False))
        self._m = momenta
        self._steps += 1
        return out

    def state_dict(self) -> dict[str, Any]:
        if not self._steps:
            return {}
        return {**pack_state("m", self._m), "steps": self._steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._m = unpack_state(state, ("m",))["m"]
        self._steps = int(state.get("steps", 0))
