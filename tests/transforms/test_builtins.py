"""The built-in transforms, each on its own: sysmetrics, label_flip, proximal, scaffold."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from fedpilot.data import ArrayDataset
from fedpilot.errors import TaskError
from fedpilot.learner.protocol import LABEL_FLIP
from fedpilot.learner.sysmetrics import BYTES_RECEIVED, BYTES_SENT, PREFIX
from fedpilot.transforms import (
    LearnerContext,
    LearnerOutput,
    LocalWork,
    UpdateTransform,
    Work,
    run_chain,
)
from fedpilot.transforms.label_flip import LabelFlip
from fedpilot.transforms.proximal import Proximal, ProximalTerm
from fedpilot.transforms.scaffold import CONTROL, DELTA, Scaffold
from fedpilot.transforms.sysmetrics import SystemMetrics
from fedpilot.types import LearnerState, RoundContext, Update

CTX = LearnerContext(learner="0", round=1, kind="train", config={})


def work(kind: str = "train", **changes: Any) -> LocalWork:
    data = ArrayDataset(np.zeros((4, 2), np.float32), np.array([0, 1, 2, 0]))
    return LocalWork(kind, [np.ones(3, np.float32)], data, **{"config": {}, **changes})


def echo(seen: list[LocalWork]) -> Work:
    """A task stand-in: returns its start weights doubled and remembers the work."""

    def task(current: LocalWork) -> LearnerOutput:
        seen.append(current)
        weights = [w * 2 for w in current.weights] if current.kind == "train" else []
        return LearnerOutput(weights, {"loss": 1.0, "local_steps": 2.0}, len(current.data))

    return task


class AddsAnExtra(UpdateTransform):
    name = "adds"

    def on_learner(
        self, work: LocalWork, run: Work, *, state: LearnerState, ctx: LearnerContext
    ) -> LearnerOutput:
        out = run(work)
        out.extras["big"] = [np.zeros(100, np.float32)]
        return out


def test_sysmetrics_counts_what_goes_on_the_wire_after_inner_transforms() -> None:
    extras = {"c": [np.zeros(5, np.float32)]}
    out = run_chain(
        [SystemMetrics(), AddsAnExtra()], work(extras=extras), echo([]), state={}, ctx=CTX
    )
    assert out.metrics[BYTES_RECEIVED] == 3 * 4 + 5 * 4  # model and extras as received
    assert out.metrics[BYTES_SENT] == 3 * 4 + 100 * 4  # the inner stage's extra counts
    assert out.metrics["loss"] == 1.0 and out.metrics[PREFIX + "train_seconds"] >= 0
    evaluated = run_chain([SystemMetrics()], work("evaluate"), echo([]), state={}, ctx=CTX)
    assert evaluated.metrics[BYTES_SENT] == 0


class Classes:
    """What label_flip asks of the task: the pooled training labels."""

    def pooled_train_data(self) -> ArrayDataset:
        return ArrayDataset(np.zeros((5, 2), np.float32), np.arange(5))


def test_label_flip_flips_only_marked_train_work() -> None:
    seen: list[LocalWork] = []
    ctx = LearnerContext(learner="0", round=1, kind="train", config={}, task=Classes())
    run_chain([LabelFlip()], work(config={LABEL_FLIP: True}), echo(seen), state={}, ctx=ctx)
    run_chain([LabelFlip()], work(), echo(seen), state={}, ctx=ctx)
    run_chain(
        [LabelFlip()], work("evaluate", config={LABEL_FLIP: True}), echo(seen), state={}, ctx=ctx
    )
    flipped, honest, evaluated = (w.data.y for w in seen)
    np.testing.assert_array_equal(flipped, [4, 3, 2, 4])  # C = 5 from the pooled labels
    np.testing.assert_array_equal(honest, [0, 1, 2, 0])
    np.testing.assert_array_equal(evaluated, [0, 1, 2, 0])
    with pytest.raises(TaskError, match="integer class labels"):
        floats = ArrayDataset(np.zeros((2, 2), np.float32), np.zeros(2, np.float32))
        run_chain(
            [LabelFlip()],
            LocalWork("train", [], floats, {LABEL_FLIP: True}),
            echo([]),
            state={},
            ctx=ctx,
        )


def test_proximal_adds_its_term_to_train_work_only() -> None:
    seen: list[LocalWork] = []
    run_chain([Proximal(mu=0.5)], work(), echo(seen), state={}, ctx=CTX)
    run_chain([Proximal(mu=0.5)], work("evaluate"), echo(seen), state={}, ctx=CTX)
    run_chain([Proximal(mu=0.0)], work(), echo(seen), state={}, ctx=CTX)
    (term,) = seen[0].gradient_terms
    assert isinstance(term, ProximalTerm) and not seen[1].gradient_terms
    assert not seen[2].gradient_terms  # mu = 0 trains exactly as FedAvg
    assert term.alpha == 0.5  # mu scales w - w0 as it is added, in one fused step
    np.testing.assert_allclose(term(0, np.array([3.0, 1.0]), np.array([1.0, 1.0])), [2.0, 0.0])
    with pytest.raises(ValueError, match="mu=-1"):
        Proximal(mu=-1)


def test_scaffold_learner_keeps_c_i_in_its_state_and_sends_the_delta() -> None:
    seen: list[LocalWork] = []
    state: LearnerState = {}
    control = [np.full(3, 0.5, np.float32)]
    ins = work(extras={CONTROL: control}, config={"lr": 0.25})
    out = run_chain([Scaffold()], ins, echo(seen), state=state, ctx=CTX)
    (term,) = seen[0].gradient_terms
    np.testing.assert_allclose(term.correction[0], 0.5)  # c - c_i with c_i = 0
    # c_i⁺ = 0 - c + (x - y) / (K lr) = -0.5 + (1 - 2) / (2 * 0.25) = -2.5
    np.testing.assert_allclose(state["scaffold/control"][0], -2.5)
    np.testing.assert_allclose(out.extras[DELTA][0], -2.5)
    again = run_chain(
        [Scaffold()],
        work(extras={CONTROL: control}, config={"lr": 0.25}),
        echo(seen),
        state=state,
        ctx=CTX,
    )
    np.testing.assert_allclose(seen[1].gradient_terms[0].correction[0], 3.0)  # 0.5 - (-2.5)
    # Δc_i = −c + (x − y)/(K lr) again; c_i moves on from where it was kept.
    np.testing.assert_allclose(again.extras[DELTA][0], -2.5)
    np.testing.assert_allclose(state["scaffold/control"][0], -5.0)
    untouched = run_chain([Scaffold()], work(), echo(seen), state=state, ctx=CTX)
    assert DELTA not in untouched.extras and not seen[2].gradient_terms


def ctx(round_: int) -> RoundContext:
    return RoundContext(run_id="r", round=round_, total_rounds=5, seed=0, num_learners=4)


def accepted(learner: str, delta: list[float]) -> Update:
    return Update(learner, [], 1, extras={DELTA: [np.array(delta, np.float32)]})


def test_scaffold_server_moves_c_by_the_participating_share_of_the_mean_delta() -> None:
    server = Scaffold()
    current = [np.zeros(2, np.float32)]
    (control,) = server.train_extras(learner="0", weights=current, ctx=ctx(1))[CONTROL]
    np.testing.assert_array_equal(control, [0, 0])
    server.on_accepted(accepted("1", [3.0, 2.0]), ctx=ctx(1))
    server.on_accepted(accepted("0", [1.0, 2.0]), ctx=ctx(1))
    aggregate = [np.array([2.0, 4.0], np.float32)]
    assert server.on_server(aggregate, reference=current, ctx=ctx(1)) is aggregate
    (control,) = server.train_extras(learner="0", weights=current, ctx=ctx(2))[CONTROL]
    np.testing.assert_allclose(control, [1.0, 1.0])  # (2/4) * mean delta = 0.5 * [2, 2]
    # Deltas of a round whose server stage never ran (too few updates) are dropped.
    server.on_accepted(accepted("0", [8.0, 8.0]), ctx=ctx(2))
    server.on_server(aggregate, reference=current, ctx=ctx(3))
    np.testing.assert_allclose(
        server.train_extras(learner="0", weights=current, ctx=ctx(4))[CONTROL][0], [1.0, 1.0]
    )


def test_scaffold_server_state_round_trips() -> None:
    server = Scaffold()
    server.train_extras(learner="0", weights=[np.zeros(3, np.float32)], ctx=ctx(1))
    server.on_accepted(accepted("0", [1.0, 1.0, 1.0]), ctx=ctx(1))
    server.on_server([np.ones(3, np.float32)], reference=[np.zeros(3, np.float32)], ctx=ctx(1))
    restored = Scaffold()
    restored.load_state_dict(server.state_dict())
    a = server.train_extras(learner="0", weights=[np.zeros(3, np.float32)], ctx=ctx(2))[CONTROL]
    b = restored.train_extras(learner="0", weights=[np.zeros(3, np.float32)], ctx=ctx(2))[CONTROL]
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_allclose(a[0], 0.25)
    assert Scaffold().state_dict() == {}
