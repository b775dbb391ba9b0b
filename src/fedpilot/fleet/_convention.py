"""Flower's message convention, both ways: an Instruction as a Message's content, a reply
Message as a Reply. Light (no torch): the learner machine's tools import it too."""

from __future__ import annotations

from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict

from fedpilot.types import (
    NUM_EXAMPLES,
    Instruction,
    LearnerId,
    LearnerState,
    Metrics,
    Reply,
    Weights,
    weights_nbytes,
)

STATE_PREFIX = "state/"
"""A learner's state travels as one ArrayRecord per key, named ``state/<key>``."""


def instruction_content(instruction: Instruction) -> RecordDict:
    """An instruction in Flower's convention: ``"arrays"``, ``"config"``, the extras and
    the learner's state (``state/<key>``)."""
    return RecordDict(
        {
            "arrays": ArrayRecord(list(instruction.weights)),
            "config": ConfigRecord(dict(instruction.config)),
            **{name: ArrayRecord(list(arrays)) for name, arrays in instruction.extras.items()},
            **{
                STATE_PREFIX + key: ArrayRecord(list(arrays))
                for key, arrays in instruction.state.items()
            },
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
    extras: dict[str, Weights] = {}
    state: LearnerState = {}
    for name, record in content.items():
        if name == "arrays" or not isinstance(record, ArrayRecord):
            continue
        if name.startswith(STATE_PREFIX):
            state[name.removeprefix(STATE_PREFIX)] = record.to_numpy_ndarrays()
        else:
            extras[name] = record.to_numpy_ndarrays()
    return Reply(
        learner=learner,
        kind=instruction.kind,
        weights=weights,
        metrics=metrics,
        num_examples=num_examples,
        extras=extras,
        # A reply without state records leaves the learner's state as it was.
        state=state or None,
        bytes_received=weights_nbytes(weights) + sum(weights_nbytes(w) for w in extras.values()),
    )
