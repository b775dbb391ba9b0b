"""Learner-level tuning: each learner picks its local settings on its own data; only the
chosen values and its local study's summary reach the server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from federations import StopAfter, digits_spec
from fedpilot.launch import run_federation
from fedpilot.rundir import RunDir
from fedpilot.spec import FederationSpec

SPACE = {
    "local.lr": {"low": 0.01, "high": 0.3, "log": True},
    "local.epochs": {"low": 1, "high": 2},
}
TUNE_KEYS = {"tune.local.lr", "tune.local.epochs"}
SUMMARY_KEYS = {"tune.trials", "tune.best_value"}


def _spec(tmp_path: Path, name: str, learner: dict[str, Any] | None) -> FederationSpec:
    raw = digits_spec(tmp_path, name, rounds=3).model_dump(mode="json")
    if learner is not None:
        raw["tune"] = {"learner": learner}
    return FederationSpec.model_validate(raw)


def _update_metrics(run_dir: Path) -> dict[tuple[int, str], dict[str, float]]:
    """Each accepted update's metrics as the server's event log has them, by (round,
    learner)."""
    found = {}
    for line in RunDir(run_dir).events.read_text().splitlines():
        event = json.loads(line)
        if event.get("event") == "UpdateAccepted":
            found[(event["round"], event["learner"])] = event["metrics"]
    return found


def _run_dir(spec: FederationSpec) -> Path:
    (run_dir,) = [p for p in spec.output_dir.iterdir() if p.is_dir() and p.name != "mlruns"]
    return run_dir


def test_learners_tune_within_their_space_and_share_only_the_values(tmp_path: Path) -> None:
    tuned = _spec(tmp_path, "tuned", {"space": SPACE, "trials": 3})
    plain = _spec(tmp_path, "plain", None)
    assert run_federation(tuned).status == "completed"
    assert run_federation(plain).status == "completed"
    with_tuning = _update_metrics(_run_dir(tuned))
    without = _update_metrics(_run_dir(plain))
    assert with_tuning and without
    usual = set.union(*(set(m) for m in without.values()))

    chosen: dict[str, dict[str, float]] = {}
    for (round_, learner), metrics in sorted(with_tuning.items()):
        # Nothing leaves the learner but the usual metrics, its values and the summary
        # (and the size of its state, which holds the values for its next rounds).
        extra = set(metrics) - usual - {"sys.state_bytes_sent", "sys.state_bytes_received"}
        first = learner not in chosen
        assert extra == (TUNE_KEYS | SUMMARY_KEYS if first else TUNE_KEYS), (round_, extra)
        values = {k: metrics[k] for k in TUNE_KEYS}
        assert 0.01 <= values["tune.local.lr"] <= 0.3
        assert values["tune.local.epochs"] in (1, 2)
        if first:
            assert metrics["tune.trials"] == 3
            assert 0 <= metrics["tune.best_value"] <= 1
            chosen[learner] = values
        else:  # every: 0 — tuned once, kept in the learner's state
            assert values == chosen[learner]
    assert len({v["tune.local.lr"] for v in chosen.values()}) > 1  # each on its own data


def test_tuned_values_survive_a_resume(tmp_path: Path) -> None:
    spec = _spec(tmp_path, "resumed", {"space": SPACE, "trials": 2})
    assert run_federation(spec, callbacks=[StopAfter(1)]).status == "interrupted"
    run_dir = _run_dir(spec)
    assert run_federation(spec, resume_dir=run_dir).status == "completed"
    seen: dict[str, dict[str, float]] = {}
    tuned: dict[str, int] = {}
    updates = _update_metrics(run_dir)
    assert {round_ for round_, _ in updates} == {1, 2, 3}
    for (_, learner), metrics in sorted(updates.items()):
        values = {k: metrics[k] for k in TUNE_KEYS}
        assert seen.setdefault(learner, values) == values
        tuned[learner] = tuned.get(learner, 0) + ("tune.trials" in metrics)
    # Each learner tuned once, in its first round: its values came back with its state.
    assert set(tuned.values()) == {1}
    assert any(n > 1 for n in _rounds_by_learner(updates).values())


def _rounds_by_learner(updates: dict[tuple[int, str], Any]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for _, learner in updates:
        counts[learner] = counts.get(learner, 0) + 1
    return counts


def test_a_task_param_the_task_cannot_take_per_call_fails_the_learner(tmp_path: Path) -> None:
    raw = _spec(tmp_path, "hidden", None).model_dump(mode="json")
    raw["rounds"] = 1
    raw["task"]["params"] = {"hidden": 32}
    raw["tune"] = {"learner": {"space": {"task.params.hidden": {"low": 16, "high": 64}}}}
    spec = FederationSpec.model_validate(raw)
    result = run_federation(spec)
    assert result.status == "failed"
    events = RunDir(_run_dir(spec)).events.read_text().splitlines()
    (failed,) = [e for e in map(json.loads, events) if e["event"] == "RoundFailed"]
    assert "cannot tune" in json.dumps(failed)


def test_a_learner_with_two_examples_keeps_one_to_train_on(tmp_path: Path) -> None:
    # 700 learners share digits' 1797 examples: some hold 2. Holding out
    # round(2 × 0.75) = 2 of them left nothing to train a local trial on.
    spec = digits_spec(
        tmp_path,
        "tiny",
        data={"num_learners": 700, "partition": "iid", "test_fraction": 0.0},
        sampling={"count": 8, "min_learners": 8, "fraction": None},
        rounds=1,
        tune={
            "learner": {
                "space": {"local.lr": {"low": 0.01, "high": 0.1}},
                "trials": 2,
                "validation_fraction": 0.75,
            }
        },
    )
    assert run_federation(spec).status == "completed"
    chosen = _update_metrics(_run_dir(spec))
    assert len(chosen) == 8 and all(m["tune.trials"] == 2 for m in chosen.values())
