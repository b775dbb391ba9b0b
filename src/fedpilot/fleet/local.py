"""LocalFleet: learners on this machine, in-process or in a pool of worker processes."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace

from fedpilot.fleet._base import Fleet
from fedpilot.fleet._messages import LearnerJob, failed_reply, run_learner
from fedpilot.fleet._partitions import PartitionLearners
from fedpilot.fleet._pool import WorkerPool
from fedpilot.fleet.apps import LearnerSource
from fedpilot.spec import FederationSpec, LocalRuntime
from fedpilot.types import Instruction, LearnerId, LearnerInfo, Reply

HELD_REPLIES = 16
"""In-process learners' replies handed over together, at most. Training a few learners
back to back and then validating and folding their replies back to back keeps each
phase's code and data warm in the CPU's caches: handing each reply over as it came cost
a small model's round about 5% more (``benchmarks/sim_overhead.py``, part b)."""
HELD_BYTES = 8 * 1024 * 1024
"""...and at most this much reply payload, so held replies stay a small, fixed amount
of memory whatever the model or the number of learners."""


class LocalFleet(Fleet):
    """``num_learners`` simulated learners, one per data partition.

    With ``workers=0`` each learner runs in this process, one after another (the
    fastest mode for small models: no serialization), and replies are handed over a few
    at a time (:data:`HELD_REPLIES`, :data:`HELD_BYTES`). These learners stand for
    learners that would run at the same time, so each has the whole time to the
    deadline to itself: every learner runs, and one whose own run took longer is
    refused as late. A learner cannot be interrupted in-process, so a round takes as
    long as its learners together; a slow learner costs the others wall-clock time,
    never their place in the round. With ``workers=N`` learners run in N processes
    against the round's wall-clock deadline: one that overruns it is killed, and those
    still queued then fail as not started.

    Learners and their declared sizes are :class:`PartitionLearners`'; a learner's own
    state travels in its instruction and reply (in-process, without copies).
    """

    def __init__(self, spec: FederationSpec, *, workers: int | None = None) -> None:
        self._source = LearnerSource.from_spec(spec)
        if workers is None:
            workers = spec.runtime.workers if isinstance(spec.runtime, LocalRuntime) else 0
        self._workers = workers
        self._learners = PartitionLearners(spec)
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
        return self._learners.infos

    def dispatch(
        self, instructions: Mapping[LearnerId, Instruction], *, deadline: float
    ) -> Iterator[Reply]:
        # All jobs first: an unknown learner id fails the dispatch before any learner runs.
        jobs = [self._learners.job(learner, ins) for learner, ins in instructions.items()]
        if self._pool is not None:
            for reply, state in self._pool.run(jobs, deadline):
                self._learners.keep_state(reply.learner, state)
                yield reply
            return
        assert self._runtime is not None
        held: list[Reply] = []
        held_bytes = 0
        allowed = deadline - time.monotonic()  # each learner's own, as if all ran at once
        for job in jobs:
            reply, state = run_learner(self._runtime, job)
            if reply.duration > allowed:
                reply = _late(job, reply.duration, allowed)
            self._learners.keep_state(job.learner, state)
            held.append(reply)
            held_bytes += reply.bytes_received
            if len(held) >= HELD_REPLIES or held_bytes >= HELD_BYTES:
                yield from held
                held.clear()
                held_bytes = 0
        yield from held

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None


def _late(job: LearnerJob, took: float, allowed: float) -> Reply:
    reason = (
        f"timeout: learner {job.learner} replied after {took:.3g} s, past the round "
        f"deadline ({max(allowed, 0):.3g} s); a late reply is refused"
    )
    return replace(failed_reply(job, reason), duration=took)
