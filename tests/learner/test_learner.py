"""fedpilot's learner: the Flower-free core and its ClientApp wrapper agree exactly."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from fedpilot.fleet._messages import LearnerJob, run_learner
from fedpilot.learner import make_clientapp
from fedpilot.learner.core import TaskLearner
from fedpilot.learner.protocol import LABEL_FLIP, train_config
from fedpilot.learner.sysmetrics import PREFIX
from fedpilot.spec import validate_spec
from fedpilot.spec.sections import ScaffoldStrategy
from fedpilot.tasks._base import TrainSettings
from fedpilot.transforms.scaffold import CONTROL, DELTA
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
    # Model metrics agree exactly; system metrics (time, memory) are measured, not equal.
    model = [
        {k: v for k, v in r.metrics.items() if not k.startswith(PREFIX)}
        for r in (direct, via_messages)
    ]
    assert model[0] == model[1]
    for reply in (direct, via_messages):
        assert (
            reply.metrics[PREFIX + "cpu_seconds"] >= 0 and reply.metrics[PREFIX + "peak_rss_mb"] > 0
        )
        assert reply.metrics[PREFIX + "bytes_received"] == sum(w.nbytes for w in weights)
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


def test_scaffold_state_and_delta_agree_between_core_and_clientapp(spec) -> None:  # type: ignore[no-untyped-def]
    spec = spec.model_copy(update={"strategy": ScaffoldStrategy()})
    core = TaskLearner(spec)
    weights = core.task.get_weights()
    control = [np.full_like(w, 0.01) for w in weights]
    config = train_config(TrainSettings(epochs=1, batch_size=8, lr=0.1, seed=3), 1)
    instruction = Instruction("train", weights, config, {CONTROL: control})
    direct, _ = run_learner(core, LearnerJob("1", 1, 4, instruction, None, {}, "m1"))
    wire, _ = run_learner(make_clientapp(spec), LearnerJob("1", 1, 4, instruction, None, {}, "m2"))
    assert direct.ok and wire.ok, (direct.error, wire.error)
    # c_i comes back in the reply's state (state/<key> records on the wire), not extras.
    assert direct.state is not None and wire.state is not None
    assert set(direct.state) == set(wire.state) == {"scaffold/control"}
    assert set(direct.extras) == set(wire.extras) == {DELTA}
    for a, b, c, d in zip(
        direct.extras[DELTA],
        wire.extras[DELTA],
        direct.state["scaffold/control"],
        wire.state["scaffold/control"],
        strict=True,
    ):
        np.testing.assert_allclose(a, b, rtol=1e-6)
        np.testing.assert_allclose(c, d, rtol=1e-6)
    # c_i starts at 0, so its first delta is c_i itself: -c + (x - y) / (K lr).
    steps = direct.metrics["local_steps"]
    expected = -control[0] + (weights[0] - direct.weights[0]) / (steps * 0.1)
    np.testing.assert_allclose(direct.extras[DELTA][0], expected, rtol=1e-4, atol=1e-6)
    # The next round starts from the kept c_i: its delta is relative to it.
    again, _ = run_learner(
        core,
        LearnerJob("1", 1, 4, replace(instruction, state=direct.state), None, {}, "m3"),
    )
    assert again.state is not None
    for new, old, delta in zip(
        again.state["scaffold/control"],
        direct.state["scaffold/control"],
        again.extras[DELTA],
        strict=True,
    ):
        np.testing.assert_allclose(new - old, delta, rtol=1e-5, atol=1e-6)


def test_label_flip_trains_on_flipped_labels(spec) -> None:  # type: ignore[no-untyped-def]
    core = TaskLearner(spec)
    weights = core.task.get_weights()
    config = train_config(TrainSettings(epochs=1, batch_size=8, lr=0.1, seed=3), 1)
    honest = core.train(0, weights, config)
    flipped = core.train(0, weights, {**config, LABEL_FLIP: True})
    assert honest.num_examples == flipped.num_examples
    assert any(
        not np.array_equal(a, b) for a, b in zip(honest.weights, flipped.weights, strict=True)
    )


def test_federated_evaluation_averages_model_metrics_not_system_metrics(spec) -> None:  # type: ignore[no-untyped-def]
    from fedpilot.launch import run_federation

    raw = spec.model_dump() | {
        "rounds": 1,
        "evaluation": {"central_every": 0, "federated_every": 1},
        "tracking": {"enabled": False},
    }
    result = run_federation(validate_spec(raw))
    assert result.status == "completed"
    assert "federated_accuracy" in result.final_metrics
    assert not [k for k in result.final_metrics if PREFIX in k]
