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
from collections.abc import Mapping

import numpy as np

from fedpilot.aggregation.server_opt import FloatArray, PerArrayStep
from fedpilot.spec.sections import FedAdagradStrategy, FedAdamStrategy, FedYogiStrategy


class AdaptiveStep(PerArrayStep):
    """What FedAdagrad, FedAdam and FedYogi share; subclasses update ``v``.

    Args:
        params: The strategy's section: ``server_lr`` ``η``, ``beta1`` ``β1``, ``beta2``
            ``β2`` (FedAdam, FedYogi) and ``tau`` ``τ``.
    """

    state_names = ("m", "v")

    def __init__(self, params: FedAdamStrategy | FedYogiStrategy | FedAdagradStrategy) -> None:
        super().__init__()
        self.server_lr = params.server_lr
        self.beta1 = params.beta1
        self.beta2 = getattr(params, "beta2", 0.0)  # FedAdagrad has no second decay
        self.tau = params.tau

    @abstractmethod
    def second_moment(self, v: FloatArray, delta_sq: FloatArray) -> FloatArray:
        """The new ``v`` from the previous one and ``Δ²`` (a new array)."""

    def move(
        self, delta: FloatArray, previous: Mapping[str, FloatArray] | None
    ) -> tuple[FloatArray, dict[str, FloatArray]]:
        if previous is None:
            m_prev, v_prev = np.zeros_like(delta), np.full_like(delta, self.tau**2)
        else:
            m_prev, v_prev = previous["m"], previous["v"]
        m = self.beta1 * m_prev + (1 - self.beta1) * delta
        v = self.second_moment(v_prev, delta * delta)
        return self.server_lr * m / (np.sqrt(v) + self.tau), {"m": m, "v": v}


class FedAdagrad(AdaptiveStep):
    """FedAdagrad: ``v ← v + Δ²``."""

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
