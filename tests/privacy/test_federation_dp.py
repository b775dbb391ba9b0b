"""Learner-level DP over whole federations: it trains in every LocalFleet mode, ε goes to
the event log after every round, the budget stops the run and a resume stops the same."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from mlflow import MlflowClient
from tests.clitools import EXAMPLES, SMALL_DIGITS, fedpilot
from tests.federations import StopAfter, digits_spec

from fedpilot.launch import run_federation
from fedpilot.orchestrator.events import RunResult
from fedpilot.privacy import PrivacyAccountant


def _privacy(**changes: Any) -> dict[str, Any]:
    return {"mode": "central", "clip_norm": 2.0, "noise_multiplier": 0.02, **changes}


def _spec(tmp_path: Path, name: str, **changes: Any) -> Any:
    return digits_spec(
        tmp_path,
        name,
        weighting={"scheme": "uniform"},
        data={"partition": "iid"},
        local={"epochs": 2, "lr": 0.1},
        tracking={"enabled": True},
        **changes,
    )


def _privacy_events(result_dir: Path) -> list[dict[str, Any]]:
    lines = (result_dir / "events.jsonl").read_text().splitlines()
    events = [json.loads(line) for line in lines]
    return [e for e in events if e["event"] == "PrivacySpent"]


def _run_dir(tmp_path: Path, name: str) -> Path:
    (run_dir,) = [p.parent for p in (tmp_path / name).rglob("events.jsonl")]
    return run_dir


@pytest.mark.parametrize(
    ("mode", "workers"), [("central", 0), ("distributed", 0), ("distributed", 2)]
)
def test_learner_dp_trains_in_the_local_fleet(tmp_path: Path, mode: str, workers: int) -> None:
    name = f"{mode}-{workers}"
    spec = _spec(
        tmp_path,
        name,
        privacy=_privacy(mode=mode),
        runtime={"mode": "local", "workers": workers},
        rounds=3,
    )
    result = run_federation(spec)
    assert result.status == "completed", result.error
    assert result.final_metrics["accuracy"] > 0.5
    spent = _privacy_events(_run_dir(tmp_path, name))
    assert [e["round"] for e in spent] == [1, 2, 3]
    epsilons = [e["epsilon"] for e in spent]
    assert all(b > a > 0 for a, b in itertools.pairwise(epsilons))
    assert {e["delta"] for e in spent} == {1e-5}
    client = MlflowClient(tracking_uri=spec.mlflow_uri())
    experiment = client.get_experiment_by_name(spec.name)
    (run,) = client.search_runs([experiment.experiment_id])
    logged = client.get_metric_history(run.info.run_id, "privacy.epsilon")
    assert [(m.step, m.value) for m in logged] == [(e["round"], e["epsilon"]) for e in spent]


def test_distributed_noise_is_the_same_in_process_and_in_a_pool(tmp_path: Path) -> None:
    results = [
        run_federation(
            _spec(
                tmp_path,
                f"same-{workers}",
                privacy=_privacy(mode="distributed", noise_multiplier=0.5),
                runtime={"mode": "local", "workers": workers},
                rounds=2,
            )
        )
        for workers in (0, 2)
    ]
    for a, b in zip(results[0].weights, results[1].weights, strict=True):
        np.testing.assert_array_equal(a, b)


def _budget_spec(tmp_path: Path, name: str) -> tuple[Any, str]:
    # 6 learners, 3 a round: a budget between ε after 2 and after 3 rounds.
    accountant = PrivacyAccountant(
        noise_multiplier=1.0, population=6, cohort=3, sampling="fixed_size", delta=1e-5
    )
    target = (accountant.epsilon(2) + accountant.epsilon(3)) / 2
    privacy = _privacy(noise_multiplier=1.0, target_epsilon=target)
    return _spec(tmp_path, name, privacy=privacy, rounds=6), f"{accountant.epsilon(2):.4g}"


def _stopped_at_two(result: RunResult, epsilon: str) -> None:
    assert (result.status, result.rounds_completed) == ("stopped", 2)
    assert result.error is not None
    assert f"ε={epsilon} at δ=1e-05 after 2 rounds" in result.error
    assert "privacy.target_epsilon" in result.error


def test_the_budget_stops_the_run_and_a_resume_stops_the_same(tmp_path: Path) -> None:
    spec, epsilon = _budget_spec(tmp_path, "budget")
    straight = run_federation(spec)
    _stopped_at_two(straight, epsilon)
    run_dir = _run_dir(tmp_path, "budget")
    assert [e["epsilon"] for e in _privacy_events(run_dir)][-1] == pytest.approx(
        float(epsilon), rel=1e-3
    )

    again = run_federation(spec, resume_dir=run_dir)  # the budget is spent: no round runs
    _stopped_at_two(again, epsilon)
    assert again.error == straight.error

    # Interrupted after round 1 and resumed: the accountant comes back from the
    # checkpoint and the run stops where the uninterrupted one did, with the same ε.
    spec, _ = _budget_spec(tmp_path, "interrupted")
    first = run_federation(spec, callbacks=[StopAfter(1)])
    assert first.status == "interrupted"
    resumed = run_federation(spec, resume_dir=_run_dir(tmp_path, "interrupted"))
    _stopped_at_two(resumed, epsilon)
    assert resumed.error == straight.error
    for a, b in zip(resumed.weights, straight.weights, strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_combination_dp_cannot_work_with_exits_2_naming_both_fields(tmp_path: Path) -> None:
    args = ["run", str(EXAMPLES / "digits.yaml"), *SMALL_DIGITS]
    done = fedpilot(*args, "--set", "privacy.mode=central", cwd=tmp_path)
    assert done.returncode == 2
    assert "privacy.mode" in done.stderr and "weighting.scheme" in done.stderr
    assert "Traceback" not in done.stderr

    robust = ["--set", "weighting.scheme=uniform", "--set", "aggregation.rule=median"]
    done = fedpilot(*args, "--set", "privacy.mode=distributed", *robust, cwd=tmp_path)
    assert done.returncode == 2
    assert "privacy.mode" in done.stderr and "aggregation.rule" in done.stderr

    done = fedpilot(*args, "--set", "privacy.noise_multiplier=-1", cwd=tmp_path)
    assert done.returncode == 2 and "privacy.noise_multiplier" in done.stderr


@pytest.mark.parametrize(
    ("changes", "other"),
    [
        ({"strategy": {"name": "scaffold"}}, "strategy.name"),
        ({"strategy": {"name": "fednova"}}, "strategy.name"),
        ({"aggregation": {"clip": {"bound": 1.0}}}, "aggregation"),
        ({"selection": {"name": "power_of_choice"}}, "selection.name"),
        (
            {"privacy": _privacy(clipping="adaptive", noise_multiplier=1.0)},
            "privacy.clipped_count_stddev",
        ),
    ],
)
def test_the_spec_refuses_what_learner_dp_cannot_work_with(
    tmp_path: Path, changes: dict[str, Any], other: str
) -> None:
    from fedpilot.errors import SpecError

    changes = {"privacy": _privacy(), **changes}
    with pytest.raises(SpecError) as refused:
        _spec(tmp_path, "refused", **changes)
    assert "privacy." in str(refused.value) and other in str(refused.value)
