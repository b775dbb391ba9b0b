"""Flower's message convention, both ways: an Instruction as a Message's content (and
back, on the learner), a learner's result as a reply's content, a reply Message as a
Reply. Light (no torch): the learner machine's tools import it too.

Content records: ``"arrays"`` (the model), ``"config"``, ``"metrics"`` (with
``num-examples``), one ArrayRecord per extra by its name, and one per entry of the
learner's state as ``state/<key>`` (never mixed into the extras).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict

from fedpilot.types import (
    NUM_EXAMPLES,
    Config,
    Instruction,
    LearnerId,
    LearnerState,
    Metrics,
    Reply,
    Weights,
    weights_nbytes,
)

STATE_PREFIX = "state/"
"""A content record under this prefix is an entry of the learner's state."""


def instruction_content(instruction: Instruction) -> RecordDict:
    """An instruction in Flower's convention: ``"arrays"``, ``"config"``, the extras
    and the learner's state."""
    return RecordDict(
        {
            "arrays": ArrayRecord(list(instruction.weights)),
            "config": ConfigRecord(dict(instruction.config)),
            **_array_records(instruction.extras, instruction.state),
        }
    )


def instruction_from_message(message: Message) -> Instruction:
    """What a learner was asked, from an instruction Message (inverse of
    :func:`instruction_content`, ``kind`` from the message type)."""
    content = message.content
    arrays = content.get("arrays")
    weights = arrays.to_numpy_ndarrays() if isinstance(arrays, ArrayRecord) else []
    record = content.get("config")
    config: Config = {}
    if record is not None:
        if not isinstance(record, ConfigRecord):
            raise ValueError('the instruction\'s "config" is not a ConfigRecord')
        config = {k: v for k, v in record.items() if isinstance(v, (bool, int, float, str))}
    extras, state = _split_arrays(content)
    return Instruction(message.metadata.message_type, weights, config, extras, state)


def reply_content(
    kind: str,
    *,
    weights: Weights,
    metrics: Metrics,
    num_examples: int,
    extras: Mapping[str, Weights],
    state: LearnerState,
) -> RecordDict:
    """A learner's result in Flower's convention: the model for a train reply, the
    metrics (with ``num-examples`` but for a query), the extras and the state."""
    records: dict[str, Any] = {}
    if kind == "train":
        records["arrays"] = ArrayRecord(list(weights))
    own: dict[str, int | float | list[int] | list[float]] = dict(metrics)
    if not kind.startswith("query"):
        own[NUM_EXAMPLES] = num_examples
    records["metrics"] = MetricRecord(own)
    records.update(_array_records(extras, state))
    return RecordDict(records)


def reply_from_message(learner: LearnerId, instruction: Instruction, message: Message) -> Reply:
    """A learner's reply Message as a fedpilot Reply (an error Message becomes a failure,
    and so does content that cannot be read, with the reason: whatever a learner sends,
    the server goes on)."""
    try:
        return _reply_from_message(learner, instruction, message)
    except Exception as exc:  # a malformed reply is the learner's failure, not the server's
        return Reply(
            learner=learner,
            kind=instruction.kind,
            error=f"reply is malformed: {type(exc).__name__}: {exc}",
        )


def _reply_from_message(learner: LearnerId, instruction: Instruction, message: Message) -> Reply:
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
            else:
                metrics.update(flat_metric(key, value))
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
    extras, state = _split_arrays(content)
    return Reply(
        learner=learner,
        kind=instruction.kind,
        weights=weights,
        metrics=metrics,
        num_examples=num_examples,
        extras=extras,
        # A reply without state records (a plain Flower ClientApp) leaves it unchanged.
        state=state or None,
        bytes_received=weights_nbytes(weights)
        + sum(weights_nbytes(w) for w in extras.values())
        + sum(weights_nbytes(w) for w in state.values()),
    )


def flat_metric(key: str, value: object) -> Metrics:
    """One MetricRecord entry as float metrics: a number as ``key``, a list (Flower
    allows ``list[float]`` and ``list[int]``) as ``key.0``, ``key.1``, ... (names MLflow
    accepts); anything else (a bool) as nothing."""
    if isinstance(value, (int, float, np.number)) and not isinstance(value, bool):
        return {key: float(value)}
    if isinstance(value, list):
        return {
            f"{key}.{i}": float(item)
            for i, item in enumerate(value)
            if isinstance(item, (int, float, np.number)) and not isinstance(item, bool)
        }
    return {}


def _array_records(
    extras: Mapping[str, Weights], state: Mapping[str, Weights]
) -> dict[str, ArrayRecord]:
    records = {name: ArrayRecord(list(arrays)) for name, arrays in extras.items()}
    records.update({STATE_PREFIX + k: ArrayRecord(list(v)) for k, v in state.items()})
    return records


def _split_arrays(content: RecordDict) -> tuple[dict[str, Weights], LearnerState]:
    """Every ArrayRecord but the model's ``"arrays"``: (extras, state)."""
    extras: dict[str, Weights] = {}
    state: LearnerState = {}
    for name, record in content.items():
        if name == "arrays" or not isinstance(record, ArrayRecord):
            continue
        if name.startswith(STATE_PREFIX):
            state[name[len(STATE_PREFIX) :]] = record.to_numpy_ndarrays()
        else:
            extras[name] = record.to_numpy_ndarrays()
    return extras, state
