"""LocalFleet: learners on this machine, in-process or in a pool of worker processes."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator, Mapping, Sequence

from flwr.app import RecordDict

from fedpilot.fleet._base import Fleet
from fedpilot.fleet._messages import LearnerJob, failed_reply, run_learner
from fedpilot.fleet._pool import WorkerPool
from fedpilot.fleet.apps import LearnerSource
from fedpilot.spec import FederationSpec
from fedpilot.types import Instruction, LearnerId, LearnerInfo, Reply


class LocalFleet(Fleet):
    """``num_learners`` simulated learners, one per data partition.

    With ``workers=0`` each learner runs in this process, one after another (the
    fastest mode for small models: no serialization). A learner cannot be interrupted
    in-process, so the deadline is checked between learners; learners not started by
    then fail with a timeout. With ``workers=N`` learners run in N processes and one
    that overruns the deadline is killed.

    Each learner keeps its Flower ``context.state`` across rounds, as on a real node.
    """

    def __init__(self, spec: FederationSpec, *, workers: int | None = None) -> None:
        self._source = LearnerSource.from_spec(spec)
        self._num = spec.data.num_learners
        self._run_config = dict(spec.task.run_config)
        self._workers = spec.runtime.workers if workers is None else workers
        self._states: dict[LearnerId, RecordDict] = {}
        self._ids = itertools.count()
        self._infos = [LearnerInfo(id=str(i), partition=i) for i in range(self._num)]
        self._partition = {info.id: i for i, info in enumerate(self._infos)}
        self._runtime = self._source.load() if self._workers == 0 else None
        self._pool = (
            WorkerPool(self._source, self._workers, spec.runtime.torch_threads)
            if self._workers > 0
            else None
        )

    @property
    def replies_in_order(self) -> bool:
        return self._pool is None

    def learners(self) -> Sequence[LearnerInfo]:
        return self._infos

    def dispatch(
        self, instructions: Mapping[LearnerId, Instruction], *, deadline: float
    ) -> Iterator[Reply]:
        jobs = (self._job(learner, ins) for learner, ins in instructions.items())
        if self._pool is not None:
            for reply, state in self._pool.run(list(jobs), deadline):
                self._keep_state(reply.learner, state)
                yield reply
            return
        assert self._runtime is not None
        for job in jobs:
            if time.monotonic() >= deadline:
                reason = f"timeout: learner {job.learner} was not started before the round deadline"
                yield failed_reply(job, reason)
                continue
            reply, state = run_learner(self._runtime, job)
            self._keep_state(job.learner, state)
            yield reply

    def _job(self, learner: LearnerId, instruction: Instruction) -> LearnerJob:
        if learner not in self._partition:
            raise KeyError(f"unknown learner {learner!r}")
        return LearnerJob(
            learner=learner,
            partition=self._partition[learner],
            num_partitions=self._num,
            instruction=instruction,
            state=self._states.get(learner),
            run_config=self._run_config,
            message_id=f"m{next(self._ids)}",
        )

    def _keep_state(self, learner: LearnerId, state: object) -> None:
        if isinstance(state, RecordDict):
            self._states[learner] = state

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None
