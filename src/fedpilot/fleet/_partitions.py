"""What every simulated fleet keeps: one learner per data partition, its declared size,
and its state between rounds (shared by LocalFleet and RayFleet)."""

from __future__ import annotations

import itertools
from typing import Any

from flwr.app import RecordDict

from fedpilot.fleet._messages import LearnerJob
from fedpilot.learner.core import LearnerState, TaskLearner
from fedpilot.spec import FederationSpec
from fedpilot.types import Instruction, LearnerId, LearnerInfo


class PartitionLearners:
    """Learner ``"i"`` serves partition ``i``; declared sizes as a registering node's.

    Each learner keeps its state across rounds, as on a real node: a ClientApp its
    Flower ``context.state``, a fedpilot learner its own (SCAFFOLD's control variate).
    The latter is part of :meth:`state_dict`, so a resumed run continues exactly.
    """

    def __init__(self, spec: FederationSpec) -> None:
        self.num = spec.data.num_learners
        self._run_config = dict(spec.task.run_config)
        self._states: dict[LearnerId, RecordDict | LearnerState] = {}
        self._ids = itertools.count()
        sizes: list[int | None] = [None] * self.num
        if spec.task.name is not None:
            declaring = TaskLearner(spec)
            sizes = [declaring.declared_examples(i) for i in range(self.num)]
        self.infos = [
            LearnerInfo(id=str(i), partition=i, declared_examples=sizes[i]) for i in range(self.num)
        ]
        self._partition = {info.id: i for i, info in enumerate(self.infos)}

    def job(self, learner: LearnerId, instruction: Instruction) -> LearnerJob:
        if learner not in self._partition:
            raise KeyError(f"unknown learner {learner!r}")
        return LearnerJob(
            learner=learner,
            partition=self._partition[learner],
            num_partitions=self.num,
            instruction=instruction,
            state=self._states.get(learner),
            run_config=self._run_config,
            message_id=f"m{next(self._ids)}",
        )

    def keep_state(self, learner: LearnerId, state: object) -> None:
        if isinstance(state, (RecordDict, dict)):
            self._states[learner] = state

    def state_dict(self) -> dict[str, Any]:
        # A ClientApp's RecordDict is not checkpointed; fedpilot learners' states are.
        return {"learners": {k: dict(v) for k, v in self._states.items() if isinstance(v, dict)}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for learner, own in state.get("learners", {}).items():
            self._states[learner] = {name: list(arrays) for name, arrays in own.items()}
