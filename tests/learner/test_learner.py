"""fedpilot's learner: the Flower-free core and its ClientApp wrapper agree exactly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fedpilot.fleet._messages import LearnerJob, run_learner
from fedpilot.learner import make_clientapp
from fedpilot.learner.core import TaskLearner
from fedpilot.learner.protocol import train_config
from fedpilot.spec import validate_spec
from fedpilot.tasks._base import TrainSettings
from fedpilot.types import Instruction


@pytest.fixture
def spec(tmp_path: Path):  # type: ignore[no-untyped-def]
    return validate_spec(
        {
            "name": "learner",
            "seed": 5,
            "task": {"name": "digits-mlp", "params": {"hidden": 16}},
            "data": {"num_learners": 4, "partition": "dirichlet(0.5)"},
            "output_dir": str(tmp_path),
        }
    )


@pytest.mark.parametrize("kind", ["train", "evaluate"])
def test_direct_call_equals_the_flower_clientapp(spec, kind: str) -> None:  # type: ignore[no-untyped-def]
    core = TaskLearner(spec)
    weights = core.task.get_weights()
    config = train_config(TrainSettings(epochs=2, batch_size=8, lr=0.1, seed=11), 1)
    job = LearnerJob("2", 2, 4, Instruction(kind, weights, config), None, {}, "m1")  # type: ignore[arg-type]
    direct, _ = run_learner(core, job)
    via_messages, state = run_learner(make_clientapp(spec), job)
    assert direct.ok and via_messages.ok
    assert direct.num_examples == via_messages.num_examples > 0
    assert direct.metrics == via_messages.metrics
    assert (
        len(direct.weights) == len(via_messages.weights) == (len(weights) if kind == "train" else 0)
    )
    for a, b in zip(direct.weights, via_messages.weights, strict=True):
        np.testing.assert_array_equal(a, b)
    assert direct.bytes_sent == via_messages.bytes_sent
    assert state is not None  # a ClientApp's Flower context state is kept


def test_unknown_partition_is_a_failed_reply(spec) -> None:  # type: ignore[no-untyped-def]
    core = TaskLearner(spec)
    job = LearnerJob("9", 9, 4, Instruction("train", core.task.get_weights(), {}), None, {}, "m")
    reply, _ = run_learner(core, job)
    assert reply.error is not None and "partition-id" in reply.error
