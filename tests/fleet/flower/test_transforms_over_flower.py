"""End-to-end: a user's update transforms over a real deployment (SuperLink, SuperNodes,
`fedpilot server` and `fedpilot learner` processes on loopback) — per-learner state
carried round to round on the Flower wire, rounds of three exchanges with a learner
dropping between the first and the last, a server stage, and a resume — ending where the
same spec ends over the local process pool, bit for bit."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from conftest import APPS_DIR
from federations import digits_spec
from fedpilot.deployment.bundle import FederationConfig
from fedpilot.fleet._messages import LearnerJob, run_learner
from fedpilot.fleet.flower.apps import client_app
from fedpilot.launch import run_federation
from fedpilot.orchestrator.checkpoint import RunState, load_checkpoint
from fedpilot.spec import load_spec
from fedpilot.types import Instruction, LearnerState
from flower_deploy import LEARNERS, Deployment, of, round_completed

PARTITION = {name: partition for partition, name in enumerate(LEARNERS)}
COUNTER = {"name": "usertransforms:RoundCounter", "params": {"shrink": 0.9}}

# beta (partition 1) fails its training every round: it said hello, so it was sent
# work, but it never reaches the last phase, which goes to the learners who trained.
DROPPING_ROUND = {
    "hello_sent": [3],
    "said_hello": [0, 1, 2],
    "trained": [0, 2],
    "confirm_sent": [0, 2],
    "confirmed": [0, 2],  # each with the nonce it kept from the first phase
}
WHOLE_ROUND = {
    "hello_sent": [3],
    "said_hello": [0, 1, 2],
    "trained": [0, 1, 2],
    "confirm_sent": [0, 1, 2],
    "confirmed": [0, 1, 2],
}


def _start_all(deployment: Deployment) -> None:
    for name, partition in PARTITION.items():
        deployment.start_learner(name, partition)


def _transformed_spec(deployment: Deployment, rounds: int, drop_in_train: int) -> Path:
    # base_dir: both the ServerApp and every learner's ClientApp import the user's
    # transforms from there (it travels with the spec in the run config).
    return deployment.write_spec(
        rounds=rounds,
        transforms=[
            COUNTER,
            {"name": "phased:ThreePhase", "params": {"drop_in_train": drop_in_train}},
        ],
        base_dir=str(APPS_DIR),
    )


def _over_the_pool(spec_path: Path, out: Path) -> tuple[list[np.ndarray], RunState]:
    """The same spec run in this process over LocalFleet's process pool."""
    raw: dict[str, Any] = yaml.safe_load(spec_path.read_text())
    raw["runtime"] = {"mode": "local", "workers": 2}
    raw["output_dir"] = str(out / "runs")
    out.mkdir(parents=True, exist_ok=True)
    path = out / "spec.yaml"
    path.write_text(yaml.safe_dump(raw))
    result = run_federation(load_spec(path))
    assert result.status == "completed", result
    (run_dir,) = [p for p in (out / "runs").iterdir() if p.is_dir()]
    return result.weights, load_checkpoint(run_dir)


def _counts(learner_state: dict[str, LearnerState], by_partition: dict[str, int]) -> dict[int, int]:
    """Rounds trained per partition, as each learner's own state counted them."""
    return {
        by_partition[learner]: int(state["round_counter/rounds"][0][0])
        if "round_counter/rounds" in state
        else 0
        for learner, state in learner_state.items()
    }


def _assert_same_model(got: list[np.ndarray], want: list[np.ndarray]) -> None:
    assert len(got) == len(want)
    for a, b in zip(got, want, strict=True):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)


def test_the_deployments_clientapp_answers_the_spec_transforms_queries(tmp_path: Path) -> None:
    # The actions a learner answers depend on the spec, which comes with each message.
    spec = digits_spec(
        tmp_path,
        "query",
        transforms=[{"name": "phased:ThreePhase", "params": {}}],
        base_dir=str(APPS_DIR),
    )
    run_config = FederationConfig(spec.model_dump_json(), "").as_run_config()
    hello = Instruction("query.hello", [], {"server-round": 4}, {}, {})
    reply, _ = run_learner(client_app, LearnerJob("b", 1, 6, hello, None, run_config, "m1"))
    assert reply.ok, reply.error
    assert reply.metrics == {"partition": 1.0}
    assert reply.state is not None
    np.testing.assert_array_equal(reply.state["three_phase/nonce"][0], [4])
    unknown = Instruction("query.nope", [], {}, {}, {})
    failed, _ = run_learner(client_app, LearnerJob("b", 1, 6, unknown, None, run_config, "m2"))
    assert failed.error is not None and "nope" in failed.error


@pytest.mark.slow
def test_user_transforms_and_three_phase_rounds_over_flower_equal_the_pool(
    deployment: Deployment, tmp_path_factory: pytest.TempPathFactory
) -> None:
    rounds = 3
    spec_path = _transformed_spec(deployment, rounds, drop_in_train=1)
    deployment.start_server()
    _start_all(deployment)

    result = deployment.finish()

    assert result["status"] == "completed" and result["rounds_completed"] == rounds
    run_dir = deployment.run_dir()
    flower = load_checkpoint(run_dir)
    assert flower.round == rounds
    # Every round: hello to all three, training from alpha and gamma, confirm to them only.
    log = flower.components["transform/three_phase"]["log"]
    assert log == {str(r): DROPPING_ROUND for r in range(1, rounds + 1)}
    ends = of(deployment.events(), "RoundCompleted")
    assert [e["round"] for e in ends] == list(range(1, rounds + 1))
    for end in ends:
        assert sorted(end["accepted"]) == ["alpha", "gamma"]
        assert set(end["failed"]) == {"beta"}
        assert "during training" in end["failed"]["beta"]
    # Each learner's state, carried on the wire between rounds, counted its own rounds;
    # beta's training never completed, so its count never came back.
    assert _counts(flower.components["learner_state"], PARTITION) == {0: 3, 1: 0, 2: 3}
    # The server half saw every round and the counts of the accepted updates: 2 × (1+2+3).
    assert flower.components["transform/round_counter"] == {
        "server_rounds": rounds,
        "accepted_rounds": 12.0,
    }

    # The same spec over the local process pool: same seeds per learner position, same
    # order-independent fold, so the same phases and the same model bit for bit.
    weights, pool = _over_the_pool(spec_path, tmp_path_factory.mktemp("pool"))
    assert pool.components["transform/three_phase"]["log"] == log
    by_index = {str(p): p for p in PARTITION.values()}
    assert _counts(pool.components["learner_state"], by_index) == {0: 3, 1: 0, 2: 3}
    assert (
        pool.components["transform/round_counter"] == flower.components["transform/round_counter"]
    )
    _assert_same_model(flower.weights, weights)
    _assert_same_model(pool.weights, weights)
    assert pool.metrics == flower.metrics


@pytest.mark.slow
def test_a_flower_run_interrupted_after_round_two_resumes_to_the_pools_model(
    deployment: Deployment, tmp_path_factory: pytest.TempPathFactory
) -> None:
    rounds = 5
    spec_path = _transformed_spec(deployment, rounds, drop_in_train=-1)
    server = deployment.start_server()
    _start_all(deployment)
    deployment.wait_for(round_completed(2))
    # Ctrl-C at a terminal: SIGINT to the server's whole process group.
    os.killpg(server.pid, signal.SIGINT)
    out, _ = server.communicate(timeout=120)
    assert server.returncode == 130, deployment.logs()
    assert json.loads(out.strip().splitlines()[-1])["status"] == "interrupted"
    run_dir = deployment.run_dir()
    cut = load_checkpoint(run_dir).round
    assert 2 <= cut < rounds

    # The learners stay up; the resumed server takes them back and runs to the end.
    deployment.start_server("--resume")
    result = deployment.finish()

    assert result["status"] == "completed" and result["rounds_completed"] == rounds
    assert result["run_dir"] == str(run_dir)
    starts = [e["start_round"] for e in of(deployment.events(), "RunStarted")]
    assert starts == [1, cut + 1]  # one run directory, continued where it stopped
    resumed = load_checkpoint(run_dir)
    assert resumed.round == rounds
    log = resumed.components["transform/three_phase"]["log"]
    assert log == {str(r): WHOLE_ROUND for r in range(1, rounds + 1)}
    assert _counts(resumed.components["learner_state"], PARTITION) == {0: 5, 1: 5, 2: 5}
    assert resumed.components["transform/round_counter"] == {
        "server_rounds": rounds,
        "accepted_rounds": 3.0 * sum(range(1, rounds + 1)),
    }
    # The uninterrupted reference: the same spec over the pool, which the first test
    # shows ends where Flower does.
    weights, whole = _over_the_pool(spec_path, tmp_path_factory.mktemp("whole"))
    _assert_same_model(resumed.weights, weights)
    assert resumed.metrics == whole.metrics
    assert whole.components["transform/three_phase"]["log"] == log
    assert (
        whole.components["transform/round_counter"] == resumed.components["transform/round_counter"]
    )
