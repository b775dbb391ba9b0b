"""Issue 13, "Poisoning": a Flower-convention ClientApp fleet (``task.flower_clientapp``)
where learner 0 of 5 misbehaves, FedAvg, default ``validation`` and ``guard``. Each
misbehaviour is refused with a recorded reason, the round goes on, and the model's
central accuracy stays where the honest fleet takes it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fedpilot.launch import open_federation, run_federation
from fedpilot.orchestrator.checkpoint import load_checkpoint
from fedpilot.spec import FederationSpec, validate_spec
from hardening import poison_apps

APP_DIR = Path(__file__).parent
ROUNDS = 5
TOLERANCE = 0.03
"""Central accuracy within 3 points of the honest fleet's (one learner of five
refused moves it by less than 1 point here)."""


def poisoned_spec(tmp_path: Path, poison: str, **changes: Any) -> FederationSpec:
    raw: dict[str, Any] = {
        "name": f"poison-{poison}",
        "seed": 7,
        "task": {
            "flower_clientapp": "poison_apps:app",
            "initial_weights": "poison_apps:initial_weights",
            "run_config": {"poison": poison, "poison-partition": 0},
        },
        "data": {"num_learners": 5},
        "rounds": ROUNDS,
        "sampling": {"fraction": 1.0, "min_learners": 3},
        "evaluation": {"federated_every": 1},
        # validation and guard: the defaults (the guard watches federated accuracy).
        "tracking": {"enabled": False},
        "runtime": {"mode": "local", "workers": 0, "round_timeout": 60},
        "output_dir": str(tmp_path / poison),
        "base_dir": str(APP_DIR),
        **changes,
    }
    return validate_spec(raw)


def central_accuracy(weights: list[np.ndarray]) -> float:
    x, y = poison_apps.central_test()
    w, b = weights
    if not (np.isfinite(w).all() and np.isfinite(b).all()):
        return 0.0
    return float((poison_apps.proba(w, b, x).argmax(axis=1) == y).mean())


def events(spec: FederationSpec) -> list[dict[str, Any]]:
    (run_dir,) = [p for p in Path(spec.output_dir).iterdir() if p.is_dir()]
    return [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def honest(tmp_path_factory: pytest.TempPathFactory) -> tuple[float, float]:
    """(central accuracy, federated accuracy) of the fleet with nobody misbehaving."""
    result = run_federation(poisoned_spec(tmp_path_factory.mktemp("honest"), "none"))
    assert result.status == "completed" and result.rollbacks == 0
    return central_accuracy(result.weights), result.final_metrics["federated_accuracy"]


@pytest.mark.parametrize(
    ("poison", "reason"),
    [
        ("add", "validation.max_norm_ratio"),  # weights + 1e9
        ("scale", "validation.max_norm_ratio"),  # weights x 50
        ("count", "`num-examples`=1000000000000 is implausible"),
    ],
)
def test_a_poisoned_update_from_one_learner_of_five_is_refused_every_round(
    tmp_path: Path, honest: tuple[float, float], poison: str, reason: str
) -> None:
    spec = poisoned_spec(tmp_path, poison)
    assert spec.guard.enabled  # the defaults
    result = run_federation(spec)
    assert (result.status, result.rounds_completed) == ("completed", ROUNDS)
    log = events(spec)
    rejected = [e for e in log if e["event"] == "UpdateRejected"]
    assert [e["learner"] for e in rejected] == ["0"] * ROUNDS  # nobody honest is refused
    assert all(reason in e["reason"] for e in rejected)
    accepted = {e["learner"] for e in log if e["event"] == "UpdateAccepted"}
    assert accepted == {"1", "2", "3", "4"}
    assert central_accuracy(result.weights) == pytest.approx(honest[0], abs=TOLERANCE)


def test_a_lying_evaluation_reply_does_not_move_the_guarded_federated_metric(
    tmp_path: Path, honest: tuple[float, float]
) -> None:
    """Learner 0 answers every evaluation with num-examples=10**12 and accuracy 1.0."""
    spec = poisoned_spec(tmp_path, "eval-count")
    result = run_federation(spec)
    log = events(spec)
    refused = [e for e in log if e["event"] == "Warning" and e["code"] == "evaluation-refused"]
    # The initial model's evaluation (round 0) and every round's.
    assert [e["round"] for e in refused] == list(range(ROUNDS + 1))
    assert all("learner 0's evaluation reply was refused" in e["message"] for e in refused)
    assert all("`num-examples`=1000000000000 is implausible" in e["message"] for e in refused)
    assert result.final_metrics["federated_accuracy"] == pytest.approx(honest[1], abs=TOLERANCE)
    assert result.final_metrics["accuracy"] < 0.99
    assert central_accuracy(result.weights) == pytest.approx(honest[0], abs=TOLERANCE)
    assert not [e for e in log if e["event"] == "UpdateRejected"]  # its training is honest


def test_a_streaming_fold_bounds_a_lying_num_examples_too(tmp_path: Path) -> None:
    """FedNova's own streaming fold cannot take an update out after the cohort is seen,
    so the ratio checks are off; the weighting bounds the claim by the learners' last
    accepted counts from round 2 on (round 1 has none to compare with)."""
    spec = poisoned_spec(tmp_path, "count", strategy={"name": "fednova"})
    result = run_federation(spec)
    assert result.status == "completed"
    rounds = [e for e in events(spec) if e["event"] == "RoundCompleted"]
    for record in rounds[1:]:
        weights = {k: v["weight"] for k, v in record["aggregation_weights"].items()}
        honest_median = float(np.median([weights[k] for k in ("1", "2", "3", "4")]))
        assert weights["0"] <= 100 * honest_median * 1.01
        assert weights["0"] / sum(weights.values()) < 0.97  # was ~1 - 1e-9


def test_the_guard_keeps_the_initial_models_evaluation_across_a_resume(tmp_path: Path) -> None:
    spec = poisoned_spec(tmp_path, "none", rounds=2)
    result = run_federation(spec)
    (run_dir,) = [p for p in Path(spec.output_dir).iterdir() if p.is_dir()]
    initial = load_checkpoint(run_dir).components["guard"]["initial"]
    # The zero model predicts class 0 everywhere: chance level, not round 1's accuracy.
    assert 0.0 < initial["accuracy"] < 0.2
    assert result.final_metrics["accuracy"] > 0.5
    with open_federation(spec.model_copy(update={"rounds": 3}), resume_dir=run_dir) as resumed:
        resumed.step()
        assert resumed._round.parts.guard.initial == initial
