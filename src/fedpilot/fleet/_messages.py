"""Running one learner: directly (TaskLearner) or through Flower Messages (a ClientApp)."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from flwr.app import (
    ArrayRecord,
    ConfigRecord,
    Context,
    Message,
    Metadata,
    MetricRecord,
    RecordDict,
)
from flwr.clientapp import ClientApp

from fedpilot.learner.core import LearnerState, TaskLearner
from fedpilot.learner.protocol import NUM_EXAMPLES
from fedpilot.types import Config, Instruction, LearnerId, Metrics, Reply, Weights, weights_nbytes

SERVER_NODE_ID = 0


@dataclass
class LearnerJob:
    """Everything a process needs to run one learner once (picklable)."""

    learner: LearnerId
    partition: int
    num_partitions: int
    instruction: Instruction
    state: RecordDict | LearnerState | None
    """A ClientApp's ``context.state`` or a TaskLearner's own state."""
    run_config: Config
    message_id: str


def run_learner(
    runtime: ClientApp | TaskLearner, job: LearnerJob
) -> tuple[Reply, RecordDict | LearnerState | None]:
    """Run one job; any failure becomes a Reply with ``error``. Also returns the
    learner's state (Flower ``context.state`` or the TaskLearner's) for its next job."""
    started = time.perf_counter()
    state = job.state
    try:
        if isinstance(runtime, TaskLearner):
            reply, state = _run_direct(runtime, job)
        else:
            reply, state = _run_clientapp(runtime, job)
    except Exception as exc:  # a learner's bug must not crash the federation
        reply = failed_reply(job, f"learner raised {type(exc).__name__}: {exc}")
    sent = weights_nbytes(job.instruction.weights)
    return replace(reply, duration=time.perf_counter() - started, bytes_sent=sent), state


def failed_reply(job: LearnerJob, reason: str) -> Reply:
    """The reply of a learner that produced nothing (raised, died, timed out)."""
    return Reply(learner=job.learner, kind=job.instruction.kind, error=reason)


def _run_direct(learner: TaskLearner, job: LearnerJob) -> tuple[Reply, LearnerState | None]:
    instruction = job.instruction
    state = job.state if isinstance(job.state, dict) else None
    if instruction.kind == "train":
        out = learner.train(
            job.partition,
            instruction.weights,
            instruction.config,
            extras=instruction.extras,
            state=state,
        )
    else:
        out = learner.evaluate(job.partition, instruction.weights, instruction.config)
    reply = Reply(
        learner=job.learner,
        kind=instruction.kind,
        weights=out.weights,
        metrics=out.metrics,
        num_examples=out.num_examples,
        extras=out.extras,
        bytes_received=weights_nbytes(out.weights)
        + sum(weights_nbytes(w) for w in out.extras.values()),
    )
    return reply, out.state if out.state is not None else state


def _run_clientapp(app: ClientApp, job: LearnerJob) -> tuple[Reply, RecordDict]:
    node_id = job.partition + 1  # Flower reserves node id 0 for the server side
    context = Context(
        run_id=0,
        node_id=node_id,
        node_config={"partition-id": job.partition, "num-partitions": job.num_partitions},
        state=job.state if isinstance(job.state, RecordDict) else RecordDict(),
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


def instruction_content(instruction: Instruction) -> RecordDict:
    """An instruction in Flower's convention: ``"arrays"``, ``"config"`` and the extras."""
    return RecordDict(
        {
            "arrays": ArrayRecord(list(instruction.weights)),
            "config": ConfigRecord(dict(instruction.config)),
            **{name: ArrayRecord(list(arrays)) for name, arrays in instruction.extras.items()},
        }
    )


def reply_from_message(learner: LearnerId, instruction: Instruction, message: Message) -> Reply:
    """A learner's reply Message as a fedpilot Reply (an error Message becomes a failure)."""
    if message.has_error():
        return Reply(
            learner=learner,
            kind=instruction.kind,
            error=f"learner replied with an error: {message.error.reason}",
        )
    content = message.content
    metrics_record = content.get("metrics")
    metrics: Metrics = {}
    num_examples: Any = None
    if isinstance(metrics_record, MetricRecord):
        for key, value in metrics_record.items():
            if key == NUM_EXAMPLES:
                num_examples = value
            elif isinstance(value, (int, float, np.number)) and not isinstance(value, bool):
                metrics[key] = float(value)
    weights: Weights = []
    if instruction.kind == "train":
        arrays = content.get("arrays")
        if not isinstance(arrays, ArrayRecord):
            return Reply(
                learner=learner,
                kind="train",
                error='reply has no "arrays" record',
            )
        weights = arrays.to_numpy_ndarrays()
    extras = {
        name: record.to_numpy_ndarrays()
        for name, record in content.items()
        if name != "arrays" and isinstance(record, ArrayRecord)
    }
    return Reply(
        learner=learner,
        kind=instruction.kind,
        weights=weights,
        metrics=metrics,
        num_examples=num_examples,
        extras=extras,
        bytes_received=weights_nbytes(weights) + sum(weights_nbytes(w) for w in extras.values()),
    )
