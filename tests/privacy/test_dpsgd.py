"""Sample-level DP-SGD (``dpsgd``): a federation trains in-process and in the process
pool, its ε grows with rounds and is Opacus's accountant's for the steps taken, a resume
is bit-identical with the same ε, clipping bounds the update, and bad specs exit 2."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from opacus.accountants import RDPAccountant

from clitools import EXAMPLES, fedpilot
from federations import StopAfter, digits_spec
from fedpilot.fleet._messages import LearnerJob, run_learner
from fedpilot.launch import load_run_spec, run_federation
from fedpilot.learner import make_clientapp
from fedpilot.learner.core import TaskLearner
from fedpilot.learner.protocol import train_config
from fedpilot.orchestrator import load_checkpoint
from fedpilot.orchestrator.events import Callback, RoundSummary
from fedpilot.privacy.dpsgd import EPSILON, DpSgd
from fedpilot.spec import FederationSpec
from fedpilot.tasks import TrainSettings
from fedpilot.tracking._mlflow_utils import round_metrics
from fedpilot.types import Instruction, RoundContext, Update

DP = {"enabled": True, "noise_multiplier": 1.1, "max_grad_norm": 1.0, "delta": 1e-5}


def dp_spec(tmp_path: Path, name: str, **changes: Any) -> FederationSpec:
    return digits_spec(tmp_path, name, privacy={"dpsgd": DP}, **changes)


class Privacy(Callback):
    """Each round's ``privacy`` metrics and which learners trained in it."""

    def __init__(self) -> None:
        self.rounds: list[dict[str, float]] = []
        self.trained: list[tuple[str, ...]] = []
        self.mlflow: list[float] = []

    def on_round_end(self, *, ctx: RoundContext, summary: RoundSummary) -> None:
        self.rounds.append(dict(summary.privacy))
        self.trained.append(summary.accepted)
        self.mlflow.append(round_metrics(summary).get(EPSILON, 0.0))  # what MLflow logs


def only_run(spec: FederationSpec) -> Path:
    (run_dir,) = [p for p in Path(spec.output_dir).iterdir() if p.is_dir()]
    return run_dir


def opacus_epsilon(rounds_trained: int, spec: FederationSpec, learner: int) -> float:
    """What Opacus's own accountant says for that many rounds of this learner's steps."""
    records = len(TaskLearner(spec).data(learner).train)
    batches = math.ceil(records / spec.local.batch_size)
    accountant = RDPAccountant()
    accountant.history = [(DP["noise_multiplier"], 1 / batches, batches * rounds_trained)]
    return float(accountant.get_epsilon(delta=DP["delta"]))


def test_dpsgd_trains_in_process_and_in_the_pool_with_opacus_epsilon(tmp_path: Path) -> None:
    seen = {0: Privacy(), 2: Privacy()}
    results = {
        workers: run_federation(
            dp_spec(tmp_path, f"w{workers}", runtime={"mode": "local", "workers": workers}),
            callbacks=[seen[workers]],
        )
        for workers in (0, 2)
    }
    assert all(r.status == "completed" for r in results.values())
    for got, want in zip(results[2].weights, results[0].weights, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert seen[2].rounds == seen[0].rounds
    # ε grows with the rounds (never shrinks) and is the largest learner's.
    epsilons = [r[EPSILON] for r in seen[0].rounds]
    assert all(b >= a for a, b in itertools.pairwise(epsilons))
    assert epsilons[-1] > epsilons[0] > 0
    spec = dp_spec(tmp_path, "w0")
    counts: dict[str, int] = {}
    for r, trained in enumerate(seen[0].trained):
        for learner in trained:
            counts[learner] = counts.get(learner, 0) + 1
        want = max(opacus_epsilon(n, spec, int(k)) for k, n in counts.items())
        assert epsilons[r] == pytest.approx(want, rel=1e-9)
    # Each learner's accountant history is its per-learner state, in the checkpoint.
    state = load_checkpoint(only_run(spec)).components["learner_state"]
    for learner, n in counts.items():
        (history,) = state[learner]["dpsgd/history"]
        assert history[:, 2].sum() == n * math.ceil(
            len(TaskLearner(spec).data(int(learner)).train) / spec.local.batch_size
        )
    # The event log's round lines carry it.
    lines = [json.loads(x) for x in (only_run(spec) / "events.jsonl").read_text().splitlines()]
    logged = [line["privacy"][EPSILON] for line in lines if "privacy" in line]
    assert logged == epsilons == seen[0].mlflow


def test_a_resumed_dpsgd_run_equals_the_uninterrupted_one(tmp_path: Path) -> None:
    whole_seen = Privacy()
    whole = run_federation(dp_spec(tmp_path, "whole"), callbacks=[whole_seen])
    cut = dp_spec(tmp_path, "cut")
    stopped = run_federation(cut, callbacks=[StopAfter(2)])
    assert stopped.status == "interrupted" and stopped.rounds_completed == 2
    resumed_seen = Privacy()
    resumed = run_federation(
        load_run_spec(only_run(cut)), resume_dir=only_run(cut), callbacks=[resumed_seen]
    )
    assert resumed.status == "completed"
    for got, want in zip(resumed.weights, whole.weights, strict=True):
        np.testing.assert_array_equal(got, want)
    assert resumed_seen.rounds == whole_seen.rounds[2:]
    ends = [load_checkpoint(only_run(s)).components for s in (cut, dp_spec(tmp_path, "whole"))]
    assert ends[0]["transform/dpsgd"] == ends[1]["transform/dpsgd"]
    for learner, state in ends[1]["learner_state"].items():
        np.testing.assert_array_equal(
            ends[0]["learner_state"][learner]["dpsgd/history"][0], state["dpsgd/history"][0]
        )
    # Noise is real: without DP-SGD the same run ends elsewhere.
    plain = run_federation(digits_spec(tmp_path, "plain"))
    assert any(not np.array_equal(a, b) for a, b in zip(plain.weights, whole.weights, strict=True))


def one_full_batch_step(spec: FederationSpec) -> float:
    """The norm of one learner's update after one SGD step (lr 1) on all its records."""
    learner = TaskLearner(spec)
    start = learner.task.get_weights()
    settings = TrainSettings(epochs=1, batch_size=100_000, lr=1.0, seed=3)
    out = learner.train(0, start, train_config(settings, 1))
    moved = [a - b for a, b in zip(out.weights, start, strict=True)]
    return float(np.sqrt(sum((d**2).sum() for d in moved)))


def test_clipping_bounds_every_records_gradient(tmp_path: Path) -> None:
    bound = 0.01
    quiet = {"enabled": True, "noise_multiplier": 1e-6, "max_grad_norm": bound}
    # Sampling rate 1 and no noise to speak of: the step is the mean of clipped
    # per-record gradients, so its norm is at most lr · max_grad_norm.
    clipped = one_full_batch_step(digits_spec(tmp_path, "clipped", privacy={"dpsgd": quiet}))
    assert 0 < clipped <= bound * (1 + 1e-4)
    assert one_full_batch_step(digits_spec(tmp_path, "plain")) > 10 * bound


def test_target_epsilon_is_reached_not_exceeded(tmp_path: Path) -> None:
    seen = Privacy()
    target = {"enabled": True, "target_epsilon": 3.0, "accountant": "prv"}
    spec = digits_spec(
        tmp_path, "target", privacy={"dpsgd": target}, rounds=2, sampling={"fraction": 1.0}
    )
    run_federation(spec, callbacks=[seen])
    final = seen.rounds[-1][EPSILON]
    assert 2.7 <= final <= 3.0 + 0.05


@pytest.mark.parametrize(
    ("sets", "fields"),
    [
        (["task.name=digits-sgd"], ["privacy.dpsgd.enabled", "task.name"]),
        (["privacy.dpsgd.max_grad_norm=-1"], ["privacy.dpsgd.max_grad_norm"]),
        (["privacy.dpsgd.delta=1.5"], ["privacy.dpsgd.delta"]),
        (["privacy.dpsgd.accountant=gdp"], ["privacy.dpsgd.accountant"]),
        (
            ["privacy.dpsgd.target_epsilon=4"],
            ["privacy.dpsgd.noise_multiplier", "privacy.dpsgd.target_epsilon"],
        ),
        (
            ["privacy.dpsgd.noise_multiplier=null"],
            ["privacy.dpsgd.noise_multiplier", "privacy.dpsgd.target_epsilon"],
        ),
    ],
)
def test_bad_dpsgd_specs_exit_2_naming_the_fields(
    tmp_path: Path, sets: list[str], fields: list[str]
) -> None:
    base = ["--set", "privacy.dpsgd.enabled=true", "--set", "privacy.dpsgd.noise_multiplier=1.0"]
    args = [a for s in sets for a in ("--set", s)]
    out = fedpilot("spec", "check", str(EXAMPLES / "digits.yaml"), *base, *args, cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr
    for field in fields:
        assert field in out.stderr


def test_the_flower_clientapp_trains_and_accounts_as_the_direct_learner(tmp_path: Path) -> None:
    spec = dp_spec(tmp_path, "wire")
    learner = TaskLearner(spec)
    config = train_config(TrainSettings(epochs=1, batch_size=16, lr=0.05, seed=5), 2)
    earlier = {"dpsgd/history": [np.array([[1.1, 0.0625, 16.0]])]}
    instruction = Instruction("train", learner.task.get_weights(), config, {}, earlier)
    job = LearnerJob("1", 1, 6, instruction, None, {}, "m1")
    wire, _ = run_learner(make_clientapp(spec), job)
    direct, _ = run_learner(TaskLearner(spec), job)
    assert wire.ok and direct.ok, (wire.error, direct.error)
    for got, want in zip(wire.weights, direct.weights, strict=True):
        np.testing.assert_array_equal(got, want)
    assert wire.metrics[EPSILON] == direct.metrics[EPSILON]
    assert wire.state is not None and direct.state is not None
    (history,) = wire.state["dpsgd/history"]
    np.testing.assert_array_equal(history, direct.state["dpsgd/history"][0])
    # The earlier steps were carried on: this call's steps were added to them.
    assert history[:, 2].sum() > 16
    assert wire.metrics[EPSILON] > opacus_single(1.1, 0.0625, 16)


def opacus_single(sigma: float, rate: float, steps: int) -> float:
    accountant = RDPAccountant()
    accountant.history = [(sigma, rate, steps)]
    return float(accountant.get_epsilon(delta=DP["delta"]))


def test_a_rollback_does_not_forget_privacy_spent() -> None:
    dpsgd = DpSgd(noise_multiplier=1.0)
    before = dpsgd.state_dict()
    ctx = RoundContext(run_id="r", round=1, total_rounds=4, seed=0)
    dpsgd.on_accepted(Update("3", [], 10, {EPSILON: 2.5}), ctx=ctx)
    dpsgd.load_state_dict(before)  # what the guard's rollback does
    assert dpsgd.spent()[EPSILON] == 2.5
    fresh = DpSgd(noise_multiplier=1.0)
    fresh.load_state_dict(dpsgd.state_dict())  # a resume
    assert fresh.spent() == dpsgd.spent()
