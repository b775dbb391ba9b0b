"""DriftFleet: a fixed, seeded share of the learners whose data drifts from a round on.

The wrapper only marks the drifting learners' train and evaluate instructions from
``simulation.drift.round`` on (config keys of :mod:`fedpilot.drift.inject`); the
learner's ``drift_injection`` transform changes its data. Like the attack simulation,
it works over any fleet.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import replace

from fedpilot.drift.inject import KEEP, KIND, SEED, SHIFT
from fedpilot.fleet._base import Fleet
from fedpilot.fleet.simulation._wrapper import FleetWrapper, round_half_up
from fedpilot.spec.drift import DriftInjectionSpec
from fedpilot.types import Instruction, LearnerId, Reply, derive_rng, derive_seed


class DriftFleet(FleetWrapper):
    """Marks the instructions of the learners that drift (see the module docstring)."""

    def __init__(self, inner: Fleet, spec: DriftInjectionSpec, seed: int) -> None:
        super().__init__(inner)
        self.spec = spec
        ids = [info.id for info in inner.learners()]
        count = min(len(ids), max(1, round_half_up(spec.fraction * len(ids))))
        picked = derive_rng(seed, 0, "drifting").choice(len(ids), size=count, replace=False)
        self._seeds = {ids[i]: derive_seed(seed, 0, "drift", i) for i in sorted(picked.tolist())}

    @property
    def drifting(self) -> frozenset[LearnerId]:
        """The learners whose data drifts."""
        return frozenset(self._seeds)

    def dispatch(
        self, instructions: Mapping[LearnerId, Instruction], *, deadline: float
    ) -> Iterator[Reply]:
        if self._round_of(instructions) < self.spec.round:
            return self.inner.dispatch(instructions, deadline=deadline)
        marks = {KIND: self.spec.kind, KEEP: self.spec.keep_classes, SHIFT: self.spec.shift}
        sent = {
            learner: replace(instruction, config={**instruction.config, **marks, SEED: seed})
            if (seed := self._seeds.get(learner)) is not None
            and instruction.kind in ("train", "evaluate")
            else instruction
            for learner, instruction in instructions.items()
        }
        return self.inner.dispatch(sent, deadline=deadline)
