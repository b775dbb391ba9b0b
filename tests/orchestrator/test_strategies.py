"""Every strategy, and the robust/adaptive/simulated parts together, run end to end and
resume exactly: a run interrupted after round 2 and resumed ends with the same model
as an uninterrupted one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from federations import StopAfter, digits_spec
from fedpilot.launch import load_run_spec, run_federation
from fedpilot.orchestrator import load_checkpoint

STRATEGIES: dict[str, dict[str, Any]] = {
    "fedavg": {"name": "fedavg"},
    "fedprox": {"name": "fedprox", "mu": 0.1},
    "fedavgm": {"name": "fedavgm", "server_lr": 0.5, "momentum": 0.9},
    "fedadam": {"name": "fedadam", "server_lr": 0.01},
    "fedyogi": {"name": "fedyogi", "server_lr": 0.01},
    "fedadagrad": {"name": "fedadagrad", "server_lr": 0.05},
    "scaffold": {"name": "scaffold"},
    "fednova": {"name": "fednova"},
}

EVERYTHING: dict[str, Any] = {
    "aggregation": {"rule": "multikrum", "byzantine_fraction": 0.2, "clip": {"quantile": 0.9}},
    "selection": {"name": "oort"},
    "weighting": {"scheme": "adaptive"},
    "validation": {"norm_outlier_z": 4.0},
    "data": {"num_learners": 10, "server_validation": 100},
    "simulation": {
        "speed": {"distribution": "lognormal", "sigma": 1.0, "seconds_per_example": 0.01},
        "availability": {"mean_on": 30.0, "mean_off": 10.0},
        "stragglers": {"fraction": 0.3, "policy": "partial"},
        "attack": {"fraction": 0.2, "behaviour": "sign_flip"},
    },
}


def assert_resume_is_exact(tmp_path: Path, **changes: Any) -> list[Any]:
    whole = run_federation(digits_spec(tmp_path, "whole", **changes))
    assert whole.status == "completed" and whole.rounds_completed == 4
    cut_spec = digits_spec(tmp_path, "cut", **changes)
    stopped = run_federation(cut_spec, callbacks=[StopAfter(2)])
    assert stopped.status == "interrupted" and stopped.rounds_completed == 2
    (run_dir,) = [p for p in Path(cut_spec.output_dir).iterdir() if p.is_dir()]
    resumed_spec = load_run_spec(run_dir)
    resumed = run_federation(resumed_spec, resume_dir=run_dir)
    assert resumed.status == "completed"
    for got, want in zip(resumed.weights, whole.weights, strict=True):
        np.testing.assert_array_equal(got, want)
    assert resumed.final_metrics == whole.final_metrics
    assert [r.accepted for r in load_checkpoint(run_dir).history] == [
        r.accepted for r in whole.history
    ]
    return [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_every_strategy_trains_and_resumes_exactly(tmp_path: Path, strategy: str) -> None:
    assert_resume_is_exact(tmp_path, strategy=STRATEGIES[strategy])


def test_robust_adaptive_simulated_federation_resumes_exactly(tmp_path: Path) -> None:
    log = assert_resume_is_exact(tmp_path, **EVERYTHING)
    ends = [e for e in log if e["event"] in ("RoundCompleted", "RoundFailed")]
    weights = [e["aggregation_weights"] for e in ends if e.get("aggregation_weights")]
    assert weights, "adaptive weights are recorded per round"
    factors = next(iter(weights[0].values()))
    assert set(factors) == {"weight", "data", "reliability", "quality"}
    assert all(e["selection_reasons"] for e in ends)
    assert all(e["virtual_time"] is not None for e in ends)


def test_scaffold_keeps_each_learners_control_variate_across_rounds(tmp_path: Path) -> None:
    spec = digits_spec(tmp_path, "scaffold", strategy={"name": "scaffold"})
    run_federation(spec)
    (run_dir,) = [p for p in Path(spec.output_dir).iterdir() if p.is_dir()]
    state = load_checkpoint(run_dir)
    learners = state.components["learner_state"]
    assert learners, "learners that trained keep c_i"
    for own in learners.values():
        assert any(np.abs(a).sum() > 0 for a in own["scaffold/control"])
    assert any(k.startswith("control.") for k in state.components["transform/scaffold"])


def test_gaussian_attackers_are_rejected_as_norm_outliers_with_a_reason(tmp_path: Path) -> None:
    changes = {
        "data": {"num_learners": 10},
        "sampling": {"fraction": 1.0, "min_learners": 1},
        "validation": {"norm_outlier_z": 3.5},
        "simulation": {"attack": {"fraction": 0.2, "behaviour": "gaussian", "noise_std": 5.0}},
    }
    spec = digits_spec(tmp_path, "outliers", **changes)
    result = run_federation(spec)
    (run_dir,) = [p for p in Path(spec.output_dir).iterdir() if p.is_dir()]
    log = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    rejected = [e for e in log if e["event"] == "UpdateRejected"]
    assert len(rejected) == 2 * 4  # both attackers, every round
    assert all("outlier in its cohort" in e["reason"] for e in rejected)
    assert all(r.accepted == 8 for r in result.history)
