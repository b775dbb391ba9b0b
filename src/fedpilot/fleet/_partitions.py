"""What every simulated fleet keeps: one learner per data partition, its declared size,
and a user ClientApp's Flower ``context.state`` between rounds (shared by LocalFleet and
RayFleet)."""

from __future__ import annotations

import itertools

from flwr.app import RecordDict

from fedpilot.fleet._messages import LearnerJob
from fedpilot.learner.core import TaskLearner
from fedpilot.spec import FederationSpec
from fedpilot.types import Instruction, LearnerId, LearnerInfo


class PartitionLearners:
    """Learner ``"i"`` serves partition ``i``; declared sizes as a registering node's.

    A user ClientApp's learner keeps its Flower ``context.state`` across rounds here, as
    on a real node (not checkpointed, as a real node's is not). fedpilot's learners keep
    nothing here: their state travels with each instruction and reply, and the round
    loop keeps it.
    """

    def __init__(self, spec: FederationSpec) -> None:
        self.num = spec.data.num_learners
        self._run_config = dict(spec.task.run_config)
        self._states: dict[LearnerId, RecordDict] = {}
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
        if isinstance(state, RecordDict):
            self._states[learner] = state
