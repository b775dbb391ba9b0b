"""Simulated heterogeneity and adversaries: Fleet wrappers, driven by the spec and seeded.

``build_simulated_fleet`` composes ``AttackFleet(HeterogeneousFleet(inner))``: the
attack sits outside so attackers' replies are poisoned after the simulation decided
whether they arrived at all.
"""

from __future__ import annotations

from fedpilot.fleet._base import Fleet
from fedpilot.fleet.simulation._wrapper import FleetWrapper
from fedpilot.fleet.simulation.attacks import (
    AttackFleet,
    choose_attackers,
    gaussian,
    lie,
    lie_z,
    scale_update,
    sign_flip,
)
from fedpilot.fleet.simulation.heterogeneity import (
    DROPPED_OUT,
    STRAGGLER_DROPPED,
    UNAVAILABLE,
    HeterogeneousFleet,
)
from fedpilot.fleet.simulation.traces import AvailabilityTrace, SpeedModel
from fedpilot.learner.protocol import LABEL_FLIP
from fedpilot.spec.simulation import SimulationSpec

__all__ = [
    "DROPPED_OUT",
    "LABEL_FLIP",
    "STRAGGLER_DROPPED",
    "UNAVAILABLE",
    "AttackFleet",
    "AvailabilityTrace",
    "FleetWrapper",
    "HeterogeneousFleet",
    "SpeedModel",
    "build_simulated_fleet",
    "choose_attackers",
    "gaussian",
    "lie",
    "lie_z",
    "scale_update",
    "sign_flip",
]


def build_simulated_fleet(inner: Fleet, spec: SimulationSpec | None, seed: int) -> Fleet:
    """``inner`` wrapped in the simulation ``spec`` asks for; ``inner`` itself if nothing.

    Checkpoint the result with its ``state_dict()`` (a wrapper nests the inner fleet's
    state) and restore it with ``load_state_dict()``.

    Args:
        inner: The fleet that really runs the learners.
        spec: The spec's ``simulation`` section, or None.
        seed: The run seed.
    """
    if spec is None:
        return inner
    fleet = inner
    if spec.heterogeneous():
        fleet = HeterogeneousFleet(fleet, spec, seed)
    if spec.drift is not None:
        from fedpilot.fleet.simulation.drift import DriftFleet

        fleet = DriftFleet(fleet, spec.drift, seed)
    if spec.attack is not None and spec.attack.fraction > 0:
        fleet = AttackFleet(fleet, spec.attack, seed)
    return fleet
