"""The ``simulation`` section: heterogeneity and adversaries simulated on one machine.

Every sub-section is optional; a spec without any runs the fleet as it is. The
fleet wrappers that act on these settings live in :mod:`fedpilot.fleet.simulation`.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, model_validator

from fedpilot.spec.drift import DriftInjectionSpec
from fedpilot.spec.sections import Section

# Shares are typed by people; a sum of 0.3 + 0.3 + 0.4 must not fail on rounding.
_SHARE_TOLERANCE = 1e-6

AttackBehaviour = Literal["gaussian", "sign_flip", "scale", "label_flip", "lie"]


class SpeedTier(Section):
    """A group of learners sharing one relative compute speed."""

    share: float = Field(gt=0, le=1, description="Share of the learners in this tier.")
    speed: float = Field(gt=0, le=1e6, description="Relative compute speed (1.0: reference).")


class SpeedSpec(Section):
    """Per-learner relative compute speed, drawn once per learner from the run seed."""

    distribution: Literal["lognormal", "uniform", "tiers"] = Field(
        default="lognormal",
        description="lognormal: exp(N(0, sigma²)) (median 1.0); uniform: U(low, high); "
        "tiers: fixed speeds for fixed shares of the learners.",
    )
    sigma: float = Field(
        default=0.5, ge=0, le=5, description="Spread of the lognormal speeds (log scale)."
    )
    low: float = Field(default=0.1, gt=0, le=1e6, description="Slowest uniform speed.")
    high: float = Field(default=1.0, gt=0, le=1e6, description="Fastest uniform speed.")
    tiers: list[SpeedTier] = Field(
        default_factory=list,
        description="With distribution 'tiers': the tiers; their shares sum to 1.",
    )
    seconds_per_example: float = Field(
        default=0.001,
        gt=0,
        description="Simulated seconds one example costs for one epoch at speed 1.0.",
    )
    latency: float = Field(
        default=0.0, ge=0, description="Fixed simulated communication seconds per round trip."
    )

    @model_validator(mode="after")
    def _consistent(self) -> SpeedSpec:
        if self.low > self.high:
            raise ValueError(f"`low` must be <= `high`, got low={self.low}, high={self.high}")
        if self.distribution == "tiers":
            if not self.tiers:
                raise ValueError("`tiers` must list at least one tier with distribution='tiers'")
            total = math.fsum(t.share for t in self.tiers)
            if abs(total - 1.0) > _SHARE_TOLERANCE:
                raise ValueError(f"the `share`s of `tiers` must sum to 1, got {total:g}")
        elif self.tiers:
            raise ValueError(
                "`tiers` only applies to distribution='tiers', "
                f"got distribution={self.distribution!r}"
            )
        return self


class AvailabilitySpec(Section):
    """On/off traces per learner: alternating exponentially distributed periods."""

    mean_on: float = Field(
        default=600.0, gt=0, description="Mean simulated seconds a learner stays online."
    )
    mean_off: float = Field(
        default=300.0, gt=0, description="Mean simulated seconds a learner stays offline."
    )
    initial_on_probability: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="Chance a learner is online at time 0; default: the long-run share "
        "mean_on / (mean_on + mean_off).",
    )

    def initial_on(self) -> float:
        """The chance a learner starts online (the stationary share unless set)."""
        if self.initial_on_probability is not None:
            return self.initial_on_probability
        return self.mean_on / (self.mean_on + self.mean_off)


class StragglerSpec(Section):
    """Stragglers as in FedProx (Li et al., 2020): a share of each round's trainers."""

    fraction: float = Field(
        ge=0, le=1, description="Share of each round's training learners that straggle."
    )
    policy: Literal["drop", "partial"] = Field(
        default="drop",
        description="drop: the straggler misses the round; partial: it runs x of the E "
        "local epochs, x uniform in 1..E-1 (a uniform fraction of E when E < 2).",
    )


class AttackSpec(Section):
    """Attacker learners: a fixed, seeded subset that poisons its training replies."""

    fraction: float = Field(ge=0, lt=1, description="Share of the learners that are attackers.")
    behaviour: AttackBehaviour = Field(
        description="gaussian: reference + N(0, noise_std²); sign_flip: reference - "
        "scale·update; scale: reference + scale·update; label_flip: train on labels "
        "y → C-1-y; lie: 'A Little Is Enough' (Baruch et al., 2019), mean - z·std."
    )
    noise_std: float = Field(
        default=1.0, gt=0, description="Standard deviation of the gaussian attack's noise."
    )
    scale: float | None = Field(
        default=None,
        gt=0,
        description="Multiplier of the update; default 1.0 for sign_flip, 10.0 for scale.",
    )
    z: float | None = Field(
        default=None,
        ge=0,
        description="lie: standard deviations to shift by; default from the paper's "
        "formula for each round's cohort.",
    )

    @model_validator(mode="after")
    def _relevant(self) -> AttackSpec:
        if self.scale is not None and self.behaviour not in ("sign_flip", "scale"):
            raise ValueError(
                "`scale` only applies to behaviour 'sign_flip' or 'scale', "
                f"got behaviour={self.behaviour!r}"
            )
        if self.z is not None and self.behaviour != "lie":
            raise ValueError(
                f"`z` only applies to behaviour 'lie', got behaviour={self.behaviour!r}"
            )
        return self

    def effective_scale(self) -> float:
        """``scale`` or its behaviour's default (1.0 for sign_flip, 10.0 for scale)."""
        if self.scale is not None:
            return self.scale
        return 10.0 if self.behaviour == "scale" else 1.0


class SimulationSpec(Section):
    """Simulated heterogeneity (speed, availability, stragglers, deadline) and attackers."""

    speed: SpeedSpec | None = Field(
        default=None, description="Per-learner compute speed; without it every speed is 1.0."
    )
    availability: AvailabilitySpec | None = Field(
        default=None, description="On/off traces; without them every learner is always online."
    )
    stragglers: StragglerSpec | None = Field(
        default=None, description="Stragglers per round (dropped or partial work)."
    )
    deadline: float | None = Field(
        default=None,
        gt=0,
        description="Simulated seconds a round may take; slower learners are dropped.",
    )
    attack: AttackSpec | None = Field(default=None, description="Attacker learners.")
    drift: DriftInjectionSpec | None = Field(default=None, description="Injected data drift.")

    def heterogeneous(self) -> bool:
        """Whether anything besides attacks is configured."""
        return any(
            part is not None
            for part in (self.speed, self.availability, self.stragglers, self.deadline)
        )
