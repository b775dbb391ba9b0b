"""Adaptive server optimizers (Reddi et al. 2021, "Adaptive Federated Optimization").

With the pseudo-gradient ``Δ = aggregate − x`` of the round, per coordinate:

- ``m ← β1·m + (1 − β1)·Δ``
- FedAdagrad ``v ← v + Δ²``; FedAdam ``v ← β2·v + (1 − β2)·Δ²``;
  FedYogi ``v ← v − (1 − β2)·Δ²·sign(v − Δ²)``
- ``x ← x + η · m / (√v + τ)``

``m`` starts at 0 and ``v`` at ``τ²`` (the paper's ``v_{-1} ≥ τ²``; Flower starts ``v``
at 0 and adds a bias correction to FedAdam's step — we follow the paper). Integer
arrays follow the aggregate. State is kept in the parameter's dtype (at least float32).
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

import numpy as np
import numpy.typing as npt

from fedpilot.aggregation._base import ServerOptimizer
from fedpilot.aggregation.server_opt import (
    StateArrays,
    check_pair,
    pack_state,
    unpack_state,
    work_dtype,
)
from fedpilot.types import Weights

FloatArray = npt.NDArray[np.floating[Any]]


class AdaptiveStep(ServerOptimizer):
    """The shared loop of FedAdagrad, FedAdam and FedYogi; subclasses update ``v``.

    Args:
        server_lr: ``η``, > 0.
        beta1: First-moment decay ``β1``, in ``[0, 1)``.
        beta2: Second-moment decay ``β2``, in ``[0, 1)`` (unused by FedAdagrad).
        tau: Adaptivity ``τ`` > 0: larger is less adaptive.
    """

    def __init__(
        self,
        server_lr: float = 0.01,
        *,
        beta1: float = 0.9,
        beta2: float = 0.99,
        tau: float = 1e-3,
    ) -> None:
        if server_lr <= 0:
            raise ValueError(f"`server_lr` must be > 0, got server_lr={server_lr}")
        for name, value in (("beta1", beta1), ("beta2", beta2)):
            if not 0 <= value < 1:
                raise ValueError(f"`{name}` must be in [0, 1), got {name}={value}")
        if tau <= 0:
            raise ValueError(f"`tau` must be > 0, got tau={tau}")
        self.server_lr = server_lr
        self.beta1 = beta1
        self.beta2 = beta2
        self.tau = tau
        self._m: StateArrays = {}
        self._v: StateArrays = {}
        self._steps = 0

    @abstractmethod
    def second_moment(self, v: FloatArray, delta_sq: FloatArray) -> FloatArray:
        """The new ``v`` from the previous one and ``Δ²`` (a new array)."""

    def step(self, *, current: Weights, aggregate: Weights) -> Weights:
        check_pair(current, aggregate)
        firsts: StateArrays = {}
        seconds: StateArrays = {}
        out: Weights = []
        for i, (x, a) in enumerate(zip(current, aggregate, strict=True)):
            if x.dtype.kind != "f":
                out.append(a.copy())
                continue
            work = work_dtype(x.dtype)
            delta = np.subtract(a, x, dtype=work)
            m_prev = self._m.get(i)
            v_prev = self._v.get(i)
            if m_prev is None or v_prev is None:
                m_prev = np.zeros_like(delta)
                v_prev = np.full_like(delta, self.tau**2)
            m = self.beta1 * m_prev + (1 - self.beta1) * delta
            v = self.second_moment(v_prev, delta * delta)
            firsts[i], seconds[i] = m, v
            moved = np.add(x, self.server_lr * m / (np.sqrt(v) + self.tau), dtype=work)
            out.append(moved.astype(x.dtype, copy=False))
        self._m, self._v = firsts, seconds
        self._steps += 1
        return out

    def state_dict(self) -> dict[str, Any]:
        if not self._steps:
            return {}
        return {**pack_state("m", self._m), **pack_state("v", self._v), "steps": self._steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        arrays = unpack_state(state, ("m", "v"))
        if set(arrays["m"]) != set(arrays["v"]):
            raise ValueError(
                "server optimizer state must hold m.<i> and v.<i> for the same arrays, got "
                f"m for {sorted(arrays['m'])} and v for {sorted(arrays['v'])}"
            )
        self._m, self._v = arrays["m"], arrays["v"]
        self._steps = int(state.get("steps", 0))


class FedAdagrad(AdaptiveStep):
    """FedAdagrad: ``v ← v + Δ²`` (``beta2`` is not used)."""

    def __init__(self, server_lr: float = 0.01, *, beta1: float = 0.0, tau: float = 1e-3) -> None:
        super().__init__(server_lr, beta1=beta1, beta2=0.0, tau=tau)

    def second_moment(self, v: FloatArray, delta_sq: FloatArray) -> FloatArray:
        return v + delta_sq


class FedAdam(AdaptiveStep):
    """FedAdam: ``v ← β2·v + (1 − β2)·Δ²``."""

    def second_moment(self, v: FloatArray, delta_sq: FloatArray) -> FloatArray:
        return self.beta2 * v + (1 - self.beta2) * delta_sq


class FedYogi(AdaptiveStep):
    """FedYogi: ``v ← v − (1 − β2)·Δ²·sign(v − Δ²)``; ``v`` grows or shrinks additively."""

    def second_moment(self, v: FloatArray, delta_sq: FloatArray) -> FloatArray:
        return v - (1 - self.beta2) * delta_sq * np.sign(v - delta_sq)
