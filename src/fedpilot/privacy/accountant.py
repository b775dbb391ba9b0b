"""The privacy accountant: ε(δ) of the rounds run so far, from Google's ``dp_accounting``.

Never a hand-written formula: each round is one Gaussian mechanism on the sum of clipped
updates, sampled as the spec says, and ``dp_accounting``'s RDP accountant composes them.
Its only state is how many rounds it has composed, so a resumed run's ε is recomputed,
bit for bit, from the checkpoint.
"""

from __future__ import annotations

from typing import Any, Literal

import dp_accounting  # type: ignore[import-untyped]
from dp_accounting import rdp

ORDERS = (*range(2, 65), 80, 96, 128, 256)
"""Integer Rényi orders: the default list's fractional ones make the Poisson-sampled
Gaussian's series fail to converge (and warn) at small q, and every order costs the
without-replacement bound a sum as long as the order (255 of them: seconds a round)."""


class PrivacyAccountant:
    """ε(δ) after ``rounds`` rounds of DP-FedAvg.

    Args:
        noise_multiplier: z, the noise std on the sum over the clip norm.
        population: learners the cohort is drawn from.
        cohort: learners per round (fixed size) or expected per round (Poisson).
        sampling: ``fixed_size`` (a uniformly random cohort without replacement, under
            replace-one neighbouring) or ``poisson`` (each learner with probability
            ``cohort/population``, under add-or-remove-one neighbouring): what
            ``dp_accounting`` supports for each.
        delta: δ of the reported ε.
        target_epsilon: the budget, if any.
    """

    def __init__(
        self,
        *,
        noise_multiplier: float,
        population: int,
        cohort: int,
        sampling: Literal["fixed_size", "poisson"],
        delta: float,
        target_epsilon: float | None = None,
    ) -> None:
        self.noise_multiplier = noise_multiplier
        self.population = population
        self.cohort = min(cohort, population)
        self.sampling = sampling
        self.delta = delta
        self.target_epsilon = target_epsilon
        self.rounds = 0
        self._cache: dict[int, float] = {}

    def round_event(self) -> dp_accounting.DpEvent:
        """One round as a ``dp_accounting`` event."""
        if self.sampling == "poisson":
            gaussian = dp_accounting.GaussianDpEvent(self.noise_multiplier)
            return dp_accounting.PoissonSampledDpEvent(self.cohort / self.population, gaussian)
        # Replacing one learner's clipped update by another's moves the sum by up to 2C,
        # and dp_accounting's without-replacement bound reads the multiplier as the noise
        # over that sensitivity, not over C (google/differential-privacy#378): z/2.
        gaussian = dp_accounting.GaussianDpEvent(self.noise_multiplier / 2)
        return dp_accounting.SampledWithoutReplacementDpEvent(
            self.population, self.cohort, gaussian
        )

    def epsilon(self, rounds: int | None = None) -> float:
        """ε(δ) after ``rounds`` rounds (default: those composed so far)."""
        rounds = self.rounds if rounds is None else rounds
        if rounds == 0:
            return 0.0
        if rounds not in self._cache:
            relation = (
                dp_accounting.NeighboringRelation.ADD_OR_REMOVE_ONE
                if self.sampling == "poisson"
                else dp_accounting.NeighboringRelation.REPLACE_ONE
            )
            accountant = rdp.RdpAccountant(list(ORDERS), neighboring_relation=relation)
            accountant.compose(self.round_event(), rounds)
            self._cache[rounds] = float(accountant.get_epsilon(self.delta))
        return self._cache[rounds]

    def compose_round(self) -> None:
        """A round released a noised aggregate."""
        self.rounds += 1

    def exhausted(self) -> str | None:
        """Why the next round may not run (it would take ε above the target), or None."""
        if self.target_epsilon is None:
            return None
        after = self.epsilon(self.rounds + 1)
        if after <= self.target_epsilon:
            return None
        return (
            f"privacy budget: ε={self.epsilon():.4g} at δ={self.delta:g} after "
            f"{self.rounds} rounds; the next round would take it to ε={after:.4g}, "
            f"above privacy.target_epsilon={self.target_epsilon:g}"
        )

    def state_dict(self) -> dict[str, Any]:
        return {"rounds": self.rounds}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rounds = int(state.get("rounds", 0))  # a fresh run: none
