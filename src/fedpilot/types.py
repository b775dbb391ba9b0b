"""fedpilot's own small types. Nothing here imports Flower (see ARCHITECTURE.md)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

Weights = list[npt.NDArray[np.generic]]
"""A model's parameters as an ordered list of numpy arrays (Flower's convention)."""

LearnerId = str

NUM_EXAMPLES = "num-examples"
"""The reply metric Flower's convention names the training set's size with."""
Scalar = bool | int | float | str
Metrics = dict[str, float]
Config = dict[str, Scalar]
InstructionKind = str
"""``"train"``, ``"evaluate"``, or a custom phase ``"query.<action>"`` (Flower's message
type convention) that an :class:`~fedpilot.transforms.UpdateTransform` answers."""
LearnerState = dict[str, "Weights"]
"""What a learner keeps between rounds: named array lists (``<transform>/<name>``). The
server holds it; it travels with each instruction and comes back with the reply."""


@dataclass(frozen=True)
class LearnerInfo:
    """A learner the fleet can reach now."""

    id: LearnerId
    partition: int | None = None
    available: bool = True
    """Whether the learner can take work now (simulated availability traces flip this)."""
    declared_examples: int | None = None
    """The most examples the learner declared it holds; a larger ``num-examples`` claim
    is implausible and rejected."""


@dataclass(frozen=True)
class FleetNotice:
    """A change in who the fleet can reach: a learner joined, left, or was refused."""

    kind: Literal["joined", "left", "refused"]
    learner: LearnerId
    """The learner's id; for a refusal, the fingerprint of the key it presented."""
    detail: str = ""


@dataclass(frozen=True)
class Instruction:
    """What the orchestrator asks one learner to do this round."""

    kind: InstructionKind
    weights: Weights
    config: Config = field(default_factory=dict)
    extras: dict[str, Weights] = field(default_factory=dict)
    """Named extra array lists a strategy sends beside the model (SCAFFOLD's server
    control variate); each travels as its own ArrayRecord."""
    state: LearnerState = field(default_factory=dict)
    """The learner's own state from its last reply (its transforms' per-learner state)."""


@dataclass(frozen=True)
class Reply:
    """One learner's answer. ``error`` is set (and ``weights`` empty) when it failed."""

    learner: LearnerId
    kind: InstructionKind
    weights: Weights = field(default_factory=list)
    metrics: Metrics = field(default_factory=dict)
    num_examples: int | float | None = None
    error: str | None = None
    extras: dict[str, Weights] = field(default_factory=dict)
    """Named extra array lists the learner sends back (SCAFFOLD's control delta)."""
    state: LearnerState | None = None
    """The learner's state for its next instruction; None: unchanged."""
    duration: float = 0.0
    bytes_sent: int = 0
    bytes_received: int = 0

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class Update:
    """An accepted training reply, ready to fold into the aggregate."""

    learner: LearnerId
    weights: Weights
    num_examples: int
    metrics: Metrics = field(default_factory=dict)
    weight: float | None = None
    """Aggregation weight; None means ``num_examples`` (FedAvg's data-size weighting)."""
    extras: dict[str, Weights] = field(default_factory=dict)

    @property
    def aggregation_weight(self) -> float:
        return float(self.num_examples if self.weight is None else self.weight)


@dataclass(frozen=True)
class RoundContext:
    """Read-only facts about the round in progress."""

    run_id: str
    round: int
    total_rounds: int
    seed: int
    num_learners: int = 0
    """Learners in the federation (SCAFFOLD scales its control update by |S|/N)."""


def weights_nbytes(weights: Weights) -> int:
    """Size of the raw parameter payload in bytes."""
    return int(sum([a.nbytes for a in weights]))


def derive_rng(seed: int, round_: int, purpose: str) -> np.random.Generator:
    """A generator for one (seed, round, purpose): the same triple always gives the same stream.

    Deriving instead of carrying RNG state means a resumed run draws exactly what an
    uninterrupted one would, without checkpointing generator internals.
    """
    purpose_key = int.from_bytes(
        hashlib.blake2b(purpose.encode(), digest_size=8).digest(), "little"
    )
    return np.random.default_rng([seed, round_, purpose_key])


def derive_seed(seed: int, round_: int, purpose: str, index: int = 0) -> int:
    """A 31-bit integer seed for libraries that take one (torch, scikit-learn).

    A hash, not a generator: it is drawn once per learner per round.
    """
    key = f"{seed}:{round_}:{purpose}:{index}".encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=4).digest(), "little") & 0x7FFFFFFF
