"""Per-learner compute speeds and on/off availability traces, pure functions of the seed.

Each learner draws from its own stream (``derive_rng(seed, 0, "<purpose>/<learner>")``),
so a learner's speed and trace do not depend on how many learners there are, in which
order they are asked about, or whether the run was resumed.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

import numpy as np

from fedpilot.fleet.simulation._wrapper import round_half_up
from fedpilot.spec.simulation import AvailabilitySpec, SpeedSpec
from fedpilot.types import LearnerId, derive_rng

# Traces are drawn in fixed-size batches: the same periods come out however far ahead
# each query looks, and a long simulation does not call the generator per period.
_BATCH = 256


class AvailabilityTrace:
    """One learner's alternating on/off periods, generated lazily as time goes on.

    Period ``k`` (between switch ``k - 1`` and switch ``k``) lasts an exponential time
    with mean ``mean_on`` or ``mean_off``; the exponential is memoryless, so starting in
    a random state at time 0 is already the long-run (stationary) picture.

    Args:
        rng: The learner's own generator; the trace consumes it.
        mean_on: Mean length of an online period, in simulated seconds.
        mean_off: Mean length of an offline period, in simulated seconds.
        initial_on: Whether the learner is online at time 0.
    """

    def __init__(
        self, rng: np.random.Generator, *, mean_on: float, mean_off: float, initial_on: bool
    ) -> None:
        self._rng = rng
        self._means = (mean_on, mean_off)
        self.initial_on = initial_on
        self._switches: list[float] = []
        self._horizon = 0.0

    @classmethod
    def for_learner(
        cls, spec: AvailabilitySpec, seed: int, learner: LearnerId
    ) -> AvailabilityTrace:
        """The trace of ``learner`` in a run seeded with ``seed``."""
        rng = derive_rng(seed, 0, f"availability/{learner}")
        initial_on = bool(rng.random() < spec.initial_on())
        return cls(rng, mean_on=spec.mean_on, mean_off=spec.mean_off, initial_on=initial_on)

    def is_on(self, t: float) -> bool:
        """Whether the learner is online at simulated time ``t``."""
        self._extend(t)
        return self._on_in_period(bisect.bisect_right(self._switches, t))

    def first_switch_between(self, start: float, end: float) -> float | None:
        """The first time strictly between ``start`` and ``end`` the state flips, if any."""
        self._extend(end)
        i = bisect.bisect_right(self._switches, start)
        if i < len(self._switches) and self._switches[i] < end:
            return self._switches[i]
        return None

    def next_switch(self, t: float) -> float:
        """The first time after ``t`` the state flips."""
        self._extend(t)
        return self._switches[bisect.bisect_right(self._switches, t)]

    def on_periods(self, until: float) -> list[tuple[float, float]]:
        """The online intervals ``[start, end)`` up to ``until`` (the last one clipped)."""
        self._extend(until)
        periods: list[tuple[float, float]] = []
        start = 0.0
        for k, end in enumerate([*self._switches, until]):
            if start >= until:
                break
            if self._on_in_period(k):
                periods.append((start, min(end, until)))
            start = end
        return periods

    def _on_in_period(self, k: int) -> bool:
        return self.initial_on if k % 2 == 0 else not self.initial_on

    def _extend(self, t: float) -> None:
        while self._horizon <= t:
            draws = self._rng.standard_exponential(_BATCH)
            for draw in draws.tolist():
                k = len(self._switches)
                mean = self._means[0] if self._on_in_period(k) else self._means[1]
                self._horizon += draw * mean
                self._switches.append(self._horizon)


class SpeedModel:
    """Relative compute speeds (1.0: the reference machine), drawn once per learner.

    With ``tiers`` the learners known at construction are split into exact shares by a
    seeded permutation; a learner that appears later draws its tier by the shares.

    Args:
        spec: The speed section; None makes every speed 1.0.
        seed: The run seed.
        learners: The learners known now, in the fleet's stable order.
    """

    def __init__(self, spec: SpeedSpec | None, seed: int, learners: Sequence[LearnerId]) -> None:
        self.spec = spec
        self._seed = seed
        self._speeds: dict[LearnerId, float] = {}
        if spec is not None and spec.distribution == "tiers":
            self._speeds.update(_tier_speeds(spec, seed, learners))

    def of(self, learner: LearnerId) -> float:
        """The speed of ``learner``."""
        if learner not in self._speeds:
            self._speeds[learner] = self._draw(learner)
        return self._speeds[learner]

    def _draw(self, learner: LearnerId) -> float:
        spec = self.spec
        if spec is None:
            return 1.0
        rng = derive_rng(self._seed, 0, f"speed/{learner}")
        if spec.distribution == "lognormal":
            return float(rng.lognormal(0.0, spec.sigma))
        if spec.distribution == "uniform":
            return float(rng.uniform(spec.low, spec.high))
        shares = np.array([tier.share for tier in spec.tiers])
        tier = int(rng.choice(len(spec.tiers), p=shares / shares.sum()))
        return spec.tiers[tier].speed


def _tier_speeds(
    spec: SpeedSpec, seed: int, learners: Sequence[LearnerId]
) -> dict[LearnerId, float]:
    order = derive_rng(seed, 0, "speed-tiers").permutation(len(learners))
    speeds: dict[LearnerId, float] = {}
    cumulative = 0.0
    begin = 0
    for tier in spec.tiers:
        cumulative += tier.share
        end = min(len(learners), round_half_up(cumulative * len(learners)))
        for index in order[begin:end].tolist():
            speeds[learners[index]] = tier.speed
        begin = max(begin, end)
    # Shares summing to 1 within the tolerance can leave one learner past the last cut.
    for index in order[begin:].tolist():
        speeds[learners[index]] = spec.tiers[-1].speed
    return speeds
