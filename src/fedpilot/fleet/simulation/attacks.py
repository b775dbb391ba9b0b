"""AttackFleet: a fixed, seeded share of the learners poisons its training replies.

Behaviours (``reference`` is the global model the instruction sent, ``w`` the model the
attacker trained honestly, ``w - reference`` its update):

- ``gaussian``: ``reference + N(0, noise_std²)`` per element. The update is pure
  zero-mean Gaussian noise, the "Gaussian Byzantine worker" of Krum (Blanchard et al.,
  2017) expressed on models instead of gradients, as FLANDERS' GAUSS attack uses it.
- ``sign_flip``: ``reference - scale·(w - reference)`` (scale 1.0 unless set).
- ``scale``: ``reference + scale·(w - reference)`` (scale 10.0 unless set): model
  replacement's boosting.
- ``label_flip``: the attacker trains on labels ``y → C−1−y``; the wrapper only sets
  the instruction config key :data:`LABEL_FLIP`, the learner does the flipping.
- ``lie``: "A Little Is Enough" (Baruch et al., 2019). Attackers train honestly; once
  all of a round's attackers replied, each sends ``μ − z·σ``, the per-coordinate mean
  and standard deviation of the attackers' models, with the paper's
  ``z = Φ⁻¹((n − s)/n)``, ``s = ⌊n/2 + 1⌋ − m`` for a cohort of ``n`` with ``m``
  attackers.

Only floating-point arrays are poisoned; integer arrays (step counters) pass through.
Evaluation replies and the replies of honest learners pass through untouched.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace

import numpy as np
import numpy.typing as npt

from fedpilot.fleet._base import Fleet
from fedpilot.fleet.simulation._wrapper import FleetWrapper, round_half_up
from fedpilot.learner.protocol import LABEL_FLIP
from fedpilot.spec.simulation import AttackSpec
from fedpilot.types import Instruction, LearnerId, Reply, Weights, derive_rng

_Float64s = npt.NDArray[np.float64]


def choose_attackers(learners: Sequence[LearnerId], fraction: float, seed: int) -> frozenset[str]:
    """The attackers among ``learners``: ``round(fraction · N)`` of them, seeded.

    Args:
        learners: Every learner, in the fleet's stable order.
        fraction: Share of attackers, in [0, 1).
        seed: The run seed.
    """
    count = min(len(learners), round_half_up(fraction * len(learners)))
    picked = derive_rng(seed, 0, "attackers").choice(len(learners), size=count, replace=False)
    return frozenset(learners[i] for i in picked.tolist())


def sign_flip(weights: Weights, reference: Weights, scale: float = 1.0) -> Weights:
    """``reference - scale·(weights - reference)``: the update reversed (and scaled)."""
    return _per_array(weights, reference, lambda w, r: r - scale * (w - r))


def scale_update(weights: Weights, reference: Weights, scale: float = 10.0) -> Weights:
    """``reference + scale·(weights - reference)``: the update boosted."""
    return _per_array(weights, reference, lambda w, r: r + scale * (w - r))


def gaussian(
    weights: Weights, reference: Weights, noise_std: float, rng: np.random.Generator
) -> Weights:
    """``reference + N(0, noise_std²)`` per element; the honest ``weights`` are discarded
    (they only tell which arrays are floating point)."""
    return _per_array(weights, reference, lambda w, r: r + rng.normal(0.0, noise_std, size=r.shape))


def lie_z(cohort: int, attackers: int) -> float:
    """The paper's z for a cohort of ``cohort`` learners, ``attackers`` of them colluding.

    ``s = ⌊n/2 + 1⌋ − m`` is how many honest learners the attackers must look closer to
    than the mean does; ``z = Φ⁻¹((n − s)/n)``. With an attacker majority s would drop to
    0 or below and z to infinity; s is kept at least 1 (the largest finite z).
    """
    if cohort <= 0 or attackers <= 0:
        return 0.0
    from scipy.stats import norm  # scipy.stats takes a while to import; only lie needs it

    s = max(1, math.floor(cohort / 2 + 1) - attackers)
    return float(norm.ppf((cohort - s) / cohort))


def lie(models: Sequence[Weights], z: float) -> Weights:
    """``μ − z·σ`` per coordinate over ``models`` (population σ).

    Integer arrays, and arrays whose shapes differ between models, are the first
    model's. A single model has σ = 0 and is sent as it is: one attacker alone cannot
    estimate the spread it hides in.
    """
    first = models[0]
    out: Weights = []
    for i, array in enumerate(first):
        column = [m[i] for m in models]
        if not _is_float(array) or any(a.shape != array.shape for a in column):
            out.append(array)
            continue
        stacked = np.stack([a.astype(np.float64) for a in column])
        out.append((stacked.mean(axis=0) - z * stacked.std(axis=0)).astype(array.dtype))
    return out


class AttackFleet(FleetWrapper):
    """A fleet whose attackers poison their training replies (see the module docstring).

    The attackers are drawn once, from the learners the inner fleet lists at
    construction, and stay the same every round.

    Args:
        inner: The fleet to wrap (usually a HeterogeneousFleet or LocalFleet).
        spec: The attack section.
        seed: The run seed.
    """

    def __init__(self, inner: Fleet, spec: AttackSpec, seed: int) -> None:
        super().__init__(inner)
        self.spec = spec
        self.seed = seed
        ids = [info.id for info in inner.learners()]
        self._attackers = choose_attackers(ids, spec.fraction, seed)

    @property
    def attackers(self) -> frozenset[LearnerId]:
        """The ids of the attacker learners."""
        return self._attackers

    def dispatch(
        self, instructions: Mapping[LearnerId, Instruction], *, deadline: float
    ) -> Iterator[Reply]:
        round_ = self._round_of(instructions)
        behaviour = self.spec.behaviour
        sent = dict(instructions)
        if behaviour == "label_flip":
            for learner, instruction in instructions.items():
                if self._attacks(learner, instruction):
                    config = {**instruction.config, LABEL_FLIP: True}
                    sent[learner] = replace(instruction, config=config)
        held: dict[LearnerId, Reply] = {}
        for reply in self.inner.dispatch(sent, deadline=deadline):
            asked = instructions.get(reply.learner)
            if asked is None or not reply.ok or not self._attacks(reply.learner, asked):
                yield reply
            elif behaviour == "lie":
                held[reply.learner] = reply
            else:
                yield self._poison(reply, asked, round_)
        if held:
            yield from self._lie(instructions, held)

    def _attacks(self, learner: LearnerId, instruction: Instruction) -> bool:
        return learner in self._attackers and instruction.kind == "train"

    def _poison(self, reply: Reply, instruction: Instruction, round_: int) -> Reply:
        spec, reference = self.spec, instruction.weights
        if spec.behaviour == "sign_flip":
            weights = sign_flip(reply.weights, reference, spec.effective_scale())
        elif spec.behaviour == "scale":
            weights = scale_update(reply.weights, reference, spec.effective_scale())
        elif spec.behaviour == "gaussian":
            # One stream per learner and round: the noise does not depend on reply order.
            rng = derive_rng(self.seed, round_, f"attack/{reply.learner}")
            weights = gaussian(reply.weights, reference, spec.noise_std, rng)
        else:  # label_flip poisons the training data, not the reply
            return reply
        return replace(reply, weights=weights)

    def _lie(
        self, instructions: Mapping[LearnerId, Instruction], held: Mapping[LearnerId, Reply]
    ) -> Iterator[Reply]:
        cohort = [lid for lid, ins in instructions.items() if ins.kind == "train"]
        colluding = sum(lid in self._attackers for lid in cohort)
        z = self.spec.z if self.spec.z is not None else lie_z(len(cohort), colluding)
        order = [lid for lid in instructions if lid in held]  # instruction order: reproducible
        crafted = lie([held[lid].weights for lid in order], z)
        for lid in order:
            yield replace(held[lid], weights=[a.copy() for a in crafted])


def _is_float(array: npt.NDArray[np.generic]) -> bool:
    return bool(np.issubdtype(array.dtype, np.floating))


def _per_array(
    weights: Weights,
    reference: Weights,
    poison: Callable[[_Float64s, _Float64s], npt.NDArray[np.float64]],
) -> Weights:
    """Apply ``poison(w, r)`` to each floating-point array pair of equal shape, computing
    in float64 and casting back; anything else passes through unchanged."""
    if len(weights) != len(reference):
        return list(weights)
    out: Weights = []
    for w, r in zip(weights, reference, strict=True):
        if _is_float(w) and w.shape == r.shape:
            result = poison(w.astype(np.float64), r.astype(np.float64))
            out.append(np.asarray(result).astype(w.dtype))
        else:
            out.append(w)
    return out
