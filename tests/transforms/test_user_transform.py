"""A user's own transform named in the spec as ``package.module:Class``: per-learner state
across rounds, a server stage, the same run in-process and in the process pool, a resume
that is bit-identical, and its custom phase answered on every learner path."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import APPS_DIR
from federations import StopAfter, digits_spec
from fedpilot.fleet import LocalFleet
from fedpilot.fleet._messages import LearnerJob, run_learner
from fedpilot.launch import load_run_spec, run_federation
from fedpilot.learner import make_clientapp
from fedpilot.learner.core import TaskLearner
from fedpilot.orchestrator import load_checkpoint
from fedpilot.orchestrator.events import Callback, UpdateVerdict
from fedpilot.spec import FederationSpec
from fedpilot.types import Instruction, LearnerState, Reply, RoundContext

COUNTER = {"name": "usertransforms:RoundCounter", "params": {"shrink": 0.9}}


def counter_spec(tmp_path: Path, name: str, **changes: Any) -> FederationSpec:
    return digits_spec(tmp_path, name, transforms=[COUNTER], base_dir=str(APPS_DIR), **changes)


class Counts(Callback):
    """The ``rounds_trained`` metric of every accepted update, by (round, learner)."""

    def __init__(self) -> None:
        self.seen: dict[tuple[int, str], float] = {}

    def on_update(self, *, ctx: RoundContext, learner: str, verdict: UpdateVerdict) -> None:
        if verdict.accepted:
            self.seen[ctx.round, learner] = verdict.metrics["rounds_trained"]


def only_run(spec: FederationSpec) -> Path:
    (run_dir,) = [p for p in Path(spec.output_dir).iterdir() if p.is_dir()]
    return run_dir


def counts(state: dict[str, LearnerState]) -> dict[str, int]:
    return {k: int(v["round_counter/rounds"][0][0]) for k, v in sorted(state.items())}


def test_state_across_rounds_and_server_stage_same_in_process_and_in_the_pool(
    tmp_path: Path,
) -> None:
    seen = {0: Counts(), 2: Counts()}
    results = {
        workers: run_federation(
            counter_spec(tmp_path, f"w{workers}", runtime={"mode": "local", "workers": workers}),
            callbacks=[seen[workers]],
        )
        for workers in (0, 2)
    }
    # The pool folds replies in an order-independent way (they arrive in any order), the
    # in-process fleet streams them in order: the sums differ in the last bits only.
    for got, want in zip(results[2].weights, results[0].weights, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    assert seen[2].seen == seen[0].seen
    # Each learner's count is one more every round it trains: state carried round to round.
    trained: dict[str, int] = {}
    for (_, learner), count in sorted(seen[0].seen.items()):
        trained[learner] = trained.get(learner, 0) + 1
        assert count == trained[learner]
    for workers in (0, 2):
        state = load_checkpoint(only_run(counter_spec(tmp_path, f"w{workers}")))
        assert counts(state.components["learner_state"]) == trained
        server = state.components["transform/round_counter"]
        assert server == {"server_rounds": 4, "accepted_rounds": sum(seen[0].seen.values())}
    # The server stage changed the model: without it the run ends elsewhere.
    plain = run_federation(digits_spec(tmp_path, "plain"))
    assert any(
        not np.array_equal(a, b) for a, b in zip(plain.weights, results[0].weights, strict=True)
    )


def test_a_resumed_run_equals_an_uninterrupted_one_bit_for_bit(tmp_path: Path) -> None:
    whole = run_federation(counter_spec(tmp_path, "whole"))
    cut = counter_spec(tmp_path, "cut")
    stopped = run_federation(cut, callbacks=[StopAfter(2)])
    assert stopped.status == "interrupted" and stopped.rounds_completed == 2
    run_dir = only_run(cut)
    resumed = run_federation(load_run_spec(run_dir), resume_dir=run_dir)
    assert resumed.status == "completed"
    for got, want in zip(resumed.weights, whole.weights, strict=True):
        np.testing.assert_array_equal(got, want)
    assert resumed.final_metrics == whole.final_metrics
    ends = [load_checkpoint(only_run(s)).components for s in (cut, counter_spec(tmp_path, "whole"))]
    assert counts(ends[0]["learner_state"]) == counts(ends[1]["learner_state"])
    assert ends[0]["transform/round_counter"] == ends[1]["transform/round_counter"]


def query(state: LearnerState) -> Instruction:
    return Instruction("query.count", [], {"plus": 10, "server-round": 3}, {}, state)


KEPT: LearnerState = {"round_counter/rounds": [np.array([2], np.int64)], "other/x": [np.ones(2)]}


def assert_answer(reply: Reply) -> None:
    assert reply.ok, reply.error
    assert reply.kind == "query.count"
    assert reply.metrics == {"rounds": 12.0, "round": 3.0}
    np.testing.assert_array_equal(reply.extras["rounds"][0], [2])
    assert reply.state is not None and set(reply.state) == set(KEPT)  # the whole state back


@pytest.mark.parametrize("workers", [0, 2])
def test_a_custom_phase_is_answered_through_the_local_fleet(tmp_path: Path, workers: int) -> None:
    spec = counter_spec(tmp_path, "query", runtime={"mode": "local", "workers": workers})
    with LocalFleet(spec) as fleet:
        replies = list(fleet.dispatch({"1": query(KEPT)}, deadline=time.monotonic() + 60))
    (reply,) = replies
    assert reply.learner == "1"
    assert_answer(reply)


def test_a_custom_phase_is_answered_by_the_clientapp(tmp_path: Path) -> None:
    spec = counter_spec(tmp_path, "query")
    job = LearnerJob("1", 1, 6, query(KEPT), None, {}, "m1")
    wire, _ = run_learner(make_clientapp(spec), job)
    direct, _ = run_learner(TaskLearner(spec), job)
    assert_answer(wire)
    assert_answer(direct)
    unknown = LearnerJob("1", 1, 6, Instruction("query.nope", [], {}), None, {}, "m2")
    for runtime in (make_clientapp(spec), TaskLearner(spec)):
        failed, _ = run_learner(runtime, unknown)
        assert failed.error is not None and "nope" in failed.error
