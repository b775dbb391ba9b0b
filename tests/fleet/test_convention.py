"""Flower's message convention both ways: the learner's state as ``state/<key>``
records apart from the extras, and list-valued metrics kept as ``name.i`` floats."""

from __future__ import annotations

import numpy as np
from flwr.app import ArrayRecord, Message, Metadata, MetricRecord, RecordDict

from fedpilot.fleet._convention import (
    instruction_content,
    instruction_from_message,
    reply_content,
    reply_from_message,
)
from fedpilot.types import Instruction


def message(content: RecordDict, kind: str) -> Message:
    metadata = Metadata(
        run_id=0,
        message_id="m",
        src_node_id=0,
        dst_node_id=1,
        reply_to_message_id="",
        group_id="1",
        created_at=0.0,
        ttl=60.0,
        message_type=kind,
    )
    return Message(content=content, metadata=metadata)  # type: ignore[call-overload,no-any-return]


def test_state_and_extras_travel_apart_both_ways() -> None:
    instruction = Instruction(
        "train",
        [np.ones(2, np.float32)],
        {"lr": 0.1},
        extras={"scaffold-control": [np.zeros(2, np.float32)]},
        state={"scaffold/control": [np.full(2, 3.0, np.float32)]},
    )
    content = instruction_content(instruction)
    assert "state/scaffold/control" in content and "scaffold-control" in content
    back = instruction_from_message(message(content, "train"))
    assert back.kind == "train" and back.config == {"lr": 0.1}
    assert set(back.extras) == {"scaffold-control"} and set(back.state) == {"scaffold/control"}
    np.testing.assert_array_equal(back.state["scaffold/control"][0], [3.0, 3.0])

    reply = reply_content(
        "train",
        weights=[np.ones(2, np.float32)],
        metrics={"loss": 0.5},
        num_examples=7,
        extras={"delta": [np.ones(1, np.float32)]},
        state={"scaffold/control": [np.zeros(3, np.float32)]},
    )
    got = reply_from_message("1", instruction, message(reply, "train"))
    assert got.ok and got.num_examples == 7 and got.metrics == {"loss": 0.5}
    assert set(got.extras) == {"delta"}
    assert got.state is not None and set(got.state) == {"scaffold/control"}
    assert got.bytes_received == 8 + 4 + 12


def test_a_reply_without_state_records_leaves_the_state_unchanged() -> None:
    content = RecordDict(
        {"arrays": ArrayRecord([np.ones(1)]), "metrics": MetricRecord({"num-examples": 3})}
    )
    got = reply_from_message("1", Instruction("train", []), message(content, "train"))
    assert got.ok and got.state is None and got.extras == {}


def test_list_metrics_are_kept_as_numbered_float_metrics() -> None:
    metrics = MetricRecord(
        {"num-examples": 5, "loss": 0.25, "per_class": [0.5, 0.75], "counts": [3, 4, 5]}
    )
    content = RecordDict({"metrics": metrics})
    got = reply_from_message("1", Instruction("evaluate", []), message(content, "evaluate"))
    assert got.ok and got.num_examples == 5
    assert got.metrics == {
        "loss": 0.25,
        "per_class.0": 0.5,
        "per_class.1": 0.75,
        "counts.0": 3.0,
        "counts.1": 4.0,
        "counts.2": 5.0,
    }
    assert all(type(v) is float for v in got.metrics.values())
