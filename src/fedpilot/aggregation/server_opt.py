"""Server optimizers without adaptivity: FedAvg's step and server momentum (FedAvgM)."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from fedpilot.aggregation._base import ServerOptimizer
from fedpilot.spec.sections import FedAvgMStrategy
from fedpilot.types import Weights

FloatArray = npt.NDArray[np.floating[Any]]
StateArrays = dict[int, FloatArray]


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


class PerArrayStep(ServerOptimizer):
    """The loop server steps with per-array state share (FedAvgM, the adaptive ones).

    For every floating array ``x`` and its aggregate ``a``: ``Δ = a − x`` in the work
    dtype (the parameter's, at least float32), :meth:`move` gives the step and the array's
    new state, and ``x + step`` is cast back to the parameter's dtype. Integer arrays
    follow the aggregate. The state (arrays named by :attr:`state_names`, per array) and
    the step count are checkpointed, so a resumed run continues bit for bit.
    """

    state_names: ClassVar[tuple[str, ...]] = ()

    def __init__(self) -> None:
        self._state: dict[str, StateArrays] = {name: {} for name in self.state_names}
        self._steps = 0

    @abstractmethod
    def move(
        self, delta: FloatArray, previous: Mapping[str, FloatArray] | None
    ) -> tuple[FloatArray, dict[str, FloatArray]]:
        """The step added to ``x`` and the array's new state (by name), from ``Δ`` and
        the array's previous state (None before its first step)."""

    def step(self, *, current: Weights, aggregate: Weights) -> Weights:
        check_pair(current, aggregate)
        state: dict[str, StateArrays] = {name: {} for name in self.state_names}
        out: Weights = []
        for i, (x, a) in enumerate(zip(current, aggregate, strict=True)):
            if x.dtype.kind != "f":
                out.append(a.copy())
                continue
            work = work_dtype(x.dtype)
            delta = np.subtract(a, x, dtype=work)
            kept = {name: self._state[name].get(i) for name in self.state_names}
            previous = {k: v for k, v in kept.items() if v is not None}
            moved, new = self.move(delta, previous if len(previous) == len(kept) else None)
            for name in self.state_names:
                state[name][i] = new[name]
            out.append(np.add(x, moved, dtype=work).astype(x.dtype, copy=False))
        self._state = state
        self._steps += 1
        return out

    def state_dict(self) -> dict[str, Any]:
        if not self._steps:
            return {}
        packed: dict[str, Any] = {}
        for name in self.state_names:
            packed.update(pack_state(name, self._state[name]))
        return {**packed, "steps": self._steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        arrays = unpack_state(state, self.state_names)
        indices = {name: sorted(found) for name, found in arrays.items()}
        if len({tuple(i) for i in indices.values()}) > 1:
            raise ValueError(
                "server optimizer state must hold "
                f"{' and '.join(n + '.<i>' for n in self.state_names)} for the same arrays, "
                f"got {indices}"
            )
        self._state = arrays
        self._steps = int(state.get("steps", 0))


class FedAvgM(PerArrayStep):
    """Server momentum (Hsu et al. 2019): ``m ← β·m + Δ``, ``x ← x + η·m``, ``Δ = aggregate − x``.

    With ``β = 0`` and ``η = 1`` it is FedAvg.

    Args:
        params: The ``fedavgm`` strategy section: ``server_lr`` ``η`` and ``momentum`` ``β``.
    """

    state_names = ("m",)

    def __init__(self, params: FedAvgMStrategy) -> None:
        super().__init__()
        self.server_lr = params.server_lr
        self.momentum = params.momentum

    def move(
        self, delta: FloatArray, previous: Mapping[str, FloatArray] | None
    ) -> tuple[FloatArray, dict[str, FloatArray]]:
        m = delta if previous is None else self.momentum * previous["m"] + delta
        return self.server_lr * m, {"m": m}
