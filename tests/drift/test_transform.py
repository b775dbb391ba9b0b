"""The ``drift`` transform's two halves: the server asks for a summary at a learner's
first round and every ``every`` rounds; the learner answers on its training reply; the
server takes the summary off the reply before validation, and a summary it cannot read
costs the learner nothing but the summary."""

from __future__ import annotations

import numpy as np

from fedpilot.data._base import ArrayDataset
from fedpilot.drift.transform import ASK, SUMMARY, DriftMonitor
from fedpilot.transforms import LearnerContext, LearnerOutput, LocalWork
from fedpilot.types import Reply, RoundContext, Weights


def _ctx(round_: int) -> RoundContext:
    return RoundContext(run_id="r", round=round_, total_rounds=10, seed=0)


def _learner_reply(
    monitor: DriftMonitor, extras: dict[str, Weights], round_: int, data: ArrayDataset
) -> Reply:
    """What the learner half sends back for a train instruction with ``extras``."""
    work = LocalWork("train", [np.zeros(2, np.float32)], data, {"seed": 1}, dict(extras))
    seen: list[LocalWork] = []

    def task(w: LocalWork) -> LearnerOutput:
        seen.append(w)
        return LearnerOutput([np.ones(2, np.float32)], {"loss": 0.5}, len(data))

    ctx = LearnerContext(learner="0", round=round_, kind="train", config={})
    out = monitor.on_learner(work, task, state={}, ctx=ctx)
    assert ASK not in seen[0].extras  # the request is the drift stage's own business
    return Reply("a", "train", out.weights, out.metrics, out.num_examples, extras=out.extras)


def test_a_summary_is_asked_for_at_the_first_round_and_every_k_rounds() -> None:
    rng = np.random.default_rng(0)
    data = ArrayDataset(rng.normal(size=(50, 3)).astype(np.float32), rng.integers(0, 4, 50))
    server, learner = DriftMonitor(every=3, metric=None), DriftMonitor(every=3, metric=None)
    sent = []
    for round_ in range(1, 8):
        extras = server.train_extras(learner="a", weights=[], ctx=_ctx(round_))
        reply = _learner_reply(learner, extras, round_, data)
        assert (SUMMARY in reply.extras) == bool(extras)
        if extras:
            taken = server.on_reply(reply, reference=[], ctx=_ctx(round_))
            assert SUMMARY not in taken.extras and taken.weights == reply.weights
            sent.append(round_)
    assert sent == [1, 4, 7]
    assert server.state.references["a"][0] == 1 and server.state.latest["a"][0] == 7
    np.testing.assert_array_equal(
        server.state.latest["a"][1].labels, np.bincount(data.y, minlength=4)
    )


def test_an_unreadable_summary_is_dropped_and_the_update_kept() -> None:
    monitor = DriftMonitor()
    bad = Reply(
        "a", "train", [np.ones(2)], {"loss": 0.1}, 10, extras={SUMMARY: [np.zeros(3, np.uint8)]}
    )
    taken = monitor.on_reply(bad, reference=[], ctx=_ctx(2))
    assert taken.ok and SUMMARY not in taken.extras and taken.weights == bad.weights
    ((round_, problem),) = monitor.state.problems
    assert round_ == 2 and "learner a's" in problem and "data summary" in problem
    assert "a" not in monitor.state.latest  # asked again next round
    assert monitor.train_extras(learner="a", weights=[], ctx=_ctx(3))


def _summary_arrays(header: bytes, features: int) -> list[np.ndarray]:
    levels = [np.nan, np.nan, 0.25, 0.5, 0.75]
    return [
        np.frombuffer(header, np.uint8),
        np.ones(3),
        np.vstack([levels, np.tile([0.0, 1.0, -0.7, 0.0, 0.7], (features, 1))]),
    ]


def test_a_hostile_summary_is_refused_with_a_reason_and_the_round_goes_on() -> None:
    monitor = DriftMonitor(max_features=4)
    names = b'"features": ["a", "b"]'
    hostile = {
        # JSON nested deeper than the parser's recursion limit.
        "nested": _summary_arrays(b"[" * 100_000 + b"]" * 100_000, 2),
        # Counts that are no number of examples: pooled, they made the federation's
        # consensus infinite, and with it every learner's feature score NaN (no test).
        "infinite count": _summary_arrays(b'{"count": Infinity, ' + names + b"}", 2),
        "huge count": _summary_arrays(b'{"count": 1e308, ' + names + b"}", 2),
        # Far more features than the run asks for (max_features, plus a regression label).
        # A feature name is a label value of fedpilot_drift_score and a field of the
        # DriftDetected event: no place for a megabyte of text.
        "long name": _summary_arrays(
            b'{"count": 5, "features": ["a", "' + b"x" * 100_000 + b'"]}', 2
        ),
        "too wide": _summary_arrays(
            b'{"count": 5, "features": [' + b",".join(b'"f%d"' % i for i in range(6)) + b"]}", 6
        ),
    }
    for round_, (case, arrays) in enumerate(hostile.items(), start=1):
        reply = Reply("a", "train", [np.ones(2)], {"loss": 0.1}, 10, extras={SUMMARY: arrays})
        taken = monitor.on_reply(reply, reference=[], ctx=_ctx(round_))
        assert taken.ok and SUMMARY not in taken.extras and taken.weights == reply.weights, case
        assert "a" not in monitor.state.latest, case
        ((told, problem),) = monitor.state.problems
        assert told == round_ and "data summary" in problem, case
        monitor.state.problems = []
    # One that fits is taken.
    fits = _summary_arrays(b'{"count": 5, ' + names + b"}", 2)
    reply = Reply("a", "train", [np.ones(2)], {"loss": 0.1}, 10, extras={SUMMARY: fits})
    monitor.on_reply(reply, reference=[], ctx=_ctx(9))
    assert monitor.state.latest["a"][0] == 9 and not monitor.state.problems
