"""Running one learner: directly (TaskLearner) or through Flower Messages (a ClientApp)."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

from flwr.app import (
    Context,
    Message,
    Metadata,
    RecordDict,
)
from flwr.clientapp import ClientApp

from fedpilot.fleet._convention import instruction_content, reply_from_message
from fedpilot.learner import sysmetrics
from fedpilot.learner.core import TaskLearner
from fedpilot.types import Config, Instruction, LearnerId, Reply, Weights, weights_nbytes

SERVER_NODE_ID = 0


@dataclass
class LearnerJob:
    """Everything a process needs to run one learner once (picklable)."""

    learner: LearnerId
    partition: int
    num_partitions: int
    instruction: Instruction
    """The work, with the learner's own state (``instruction.state``)."""
    state: RecordDict | None
    """A user ClientApp's Flower ``context.state`` (fedpilot's learners keep none)."""
    run_config: Config
    message_id: str


def run_learner(
    runtime: ClientApp | TaskLearner, job: LearnerJob
) -> tuple[Reply, RecordDict | None]:
    """Run one job; any failure becomes a Reply with ``error``. Also returns a user
    ClientApp's ``context.state`` for its next job (fedpilot's learner state comes back
    in ``Reply.state``)."""
    started = time.perf_counter()
    state = job.state
    try:
        if isinstance(runtime, TaskLearner):
            return _run_direct(runtime, job, started), None
        reply, state = _run_clientapp(runtime, job)
    except Exception as exc:  # a learner's bug must not crash the federation
        reply = failed_reply(job, f"learner raised {type(exc).__name__}: {exc}")
    sent = weights_nbytes(job.instruction.weights)
    return replace(reply, duration=time.perf_counter() - started, bytes_sent=sent), state


def failed_reply(job: LearnerJob, reason: str) -> Reply:
    """The reply of a learner that produced nothing (raised, died, timed out)."""
    return Reply(learner=job.learner, kind=job.instruction.kind, error=reason)


def _run_direct(learner: TaskLearner, job: LearnerJob, started: float) -> Reply:
    instruction = job.instruction
    out = learner.run(job.partition, instruction)
    # The learner measured the payload both ways (the sysmetrics transform): what it
    # received is what this side sent. A query is not measured: count its arrays.
    received = out.metrics.get(sysmetrics.BYTES_RECEIVED)
    sent = out.metrics.get(sysmetrics.BYTES_SENT)
    if received is None:
        received = weights_nbytes(instruction.weights) + _nbytes(instruction.extras)
    if sent is None:
        sent = weights_nbytes(out.weights) + _nbytes(out.extras)
    return Reply(
        learner=job.learner,
        kind=instruction.kind,
        weights=out.weights,
        metrics=out.metrics,
        num_examples=out.num_examples,
        extras=out.extras,
        state=out.state,
        duration=time.perf_counter() - started,
        bytes_sent=int(received),
        bytes_received=int(sent),
    )


def _nbytes(named: dict[str, Weights]) -> int:
    return sum(weights_nbytes(w) for w in named.values())


def _run_clientapp(app: ClientApp, job: LearnerJob) -> tuple[Reply, RecordDict]:
    node_id = job.partition + 1  # Flower reserves node id 0 for the server side
    context = Context(
        run_id=0,
        node_id=node_id,
        node_config={"partition-id": job.partition, "num-partitions": job.num_partitions},
        state=job.state if job.state is not None else RecordDict(),
        run_config=dict(job.run_config),
    )
    message = _to_message(job.instruction, node_id=node_id, message_id=job.message_id)
    return reply_from_message(job.learner, job.instruction, app(message, context)), context.state


def _to_message(instruction: Instruction, *, node_id: int, message_id: str) -> Message:
    metadata = Metadata(
        run_id=0,
        message_id=message_id,
        src_node_id=SERVER_NODE_ID,
        dst_node_id=node_id,
        reply_to_message_id="",
        group_id=str(instruction.config.get("server-round", "")),
        created_at=time.time(),
        ttl=3600.0,
        message_type=instruction.kind,
    )
    content = instruction_content(instruction)
    # Flower sets instruction metadata from the running task's identity, which only
    # exists under a SuperLink; the in-process fleet is that identity, so it sets it.
    message: Message = Message(content=content, metadata=metadata)  # type: ignore[call-overload]
    return message
