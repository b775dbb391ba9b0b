"""A small, real Fleet whose replies follow from the instruction: easy to predict."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from fedpilot.fleet import Fleet
from fedpilot.types import Config, Instruction, LearnerId, LearnerInfo, Reply, Weights

REFERENCE: Weights = [
    np.zeros((3, 4), np.float32),
    np.arange(5, dtype=np.float64),
    np.array([7, 8], np.int64),  # a step counter: never poisoned
]


class EchoFleet(Fleet):
    """Learner ``lid`` trains to ``weights + offsets[lid]`` and holds ``examples[lid]``.

    Records every instruction it receives, so tests can tell who really ran.
    """

    def __init__(
        self,
        examples: Mapping[LearnerId, int],
        *,
        offsets: Mapping[LearnerId, float] | None = None,
        declare: bool = True,
        in_order: bool = True,
    ) -> None:
        self.examples = dict(examples)
        self.offsets = dict(offsets or {})
        self.declare = declare
        self.in_order = in_order
        self.calls: list[dict[LearnerId, Instruction]] = []
        self.closed = False

    @property
    def ran(self) -> list[LearnerId]:
        """Who ran in the last dispatch."""
        return list(self.calls[-1]) if self.calls else []

    @property
    def replies_in_order(self) -> bool:
        return self.in_order

    def learners(self) -> Sequence[LearnerInfo]:
        return [
            LearnerInfo(id=lid, partition=i, declared_examples=n if self.declare else None)
            for i, (lid, n) in enumerate(self.examples.items())
        ]

    def dispatch(
        self, instructions: Mapping[LearnerId, Instruction], *, deadline: float
    ) -> Iterator[Reply]:
        self.calls.append(dict(instructions))
        items = list(instructions.items())
        if not self.in_order:
            items.reverse()
        for lid, ins in items:
            offset = self.offsets.get(lid, 1.0)
            weights: Weights = []
            if ins.kind == "train":
                weights = [w + np.asarray(offset).astype(w.dtype) for w in ins.weights]
            yield Reply(
                learner=lid,
                kind=ins.kind,
                weights=weights,
                metrics={"loss": 0.5},
                num_examples=self.examples[lid],
                duration=123.0,
                bytes_sent=10,
                bytes_received=20,
            )

    def state_dict(self) -> dict[str, Any]:
        return {"echo": len(self.calls)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.calls = [{}] * int(state.get("echo", 0))

    def close(self) -> None:
        self.closed = True


def ids(n: int) -> list[LearnerId]:
    return [str(i) for i in range(n)]


def instructions(
    learners: Sequence[LearnerId],
    round_: int,
    *,
    kind: str = "train",
    epochs: float | int = 2.0,
    weights: Weights | None = None,
) -> dict[LearnerId, Instruction]:
    config: Config = {"server-round": round_}
    if kind == "train":
        config["local-epochs"] = epochs
    ins = Instruction("train" if kind == "train" else "evaluate", weights or REFERENCE, config)
    return {lid: ins for lid in learners}


def run(fleet: Fleet, learners: Sequence[LearnerId], round_: int, **kw: object) -> list[Reply]:
    batch = instructions(learners, round_, **kw)  # type: ignore[arg-type]
    return list(fleet.dispatch(batch, deadline=time.monotonic() + 60))


def by_id(replies: Sequence[Reply]) -> dict[LearnerId, Reply]:
    return {r.learner: r for r in replies}
