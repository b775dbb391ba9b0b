"""Rounds of several exchanges: hello → training → confirm with the same cohort, a learner
dropping before training and one dropping between the first and the last phase."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import APPS_DIR
from federations import digits_spec
from fedpilot.launch import run_federation
from fedpilot.orchestrator import load_checkpoint
from fedpilot.spec import FederationSpec

EXPECTED_ROUND = {
    "hello_sent": [4],  # every chosen learner
    "said_hello": [0, 2, 3],
    "dropped_in_hello": [1],  # partition 1 failed the first phase: never trained
    "trained": [0, 3],  # partition 2 failed its training
    "confirm_sent": [0, 3],  # ...so the last phase saw the smaller cohort
    "confirmed": [0, 3],  # each with the nonce it kept from the first phase
}


def phased_spec(tmp_path: Path, name: str, workers: int) -> FederationSpec:
    return digits_spec(
        tmp_path,
        name,
        data={"num_learners": 4},
        sampling={"fraction": 1.0, "min_learners": 1},
        rounds=2,
        transforms=[
            {"name": "phased:ThreePhase", "params": {"drop_in_hello": 1, "drop_in_train": 2}}
        ],
        runtime={"mode": "local", "workers": workers},
        base_dir=str(APPS_DIR),
    )


@pytest.mark.parametrize("workers", [0, 2], ids=["in-process", "pool"])
def test_a_three_phase_round_over_the_local_fleet(tmp_path: Path, workers: int) -> None:
    spec = phased_spec(tmp_path, f"phased{workers}", workers)
    result = run_federation(spec)
    assert result.status == "completed" and result.rounds_completed == 2
    (run_dir,) = [p for p in Path(spec.output_dir).iterdir() if p.is_dir()]
    log = load_checkpoint(run_dir).components["transform/three_phase"]["log"]
    assert log == {"1": EXPECTED_ROUND, "2": EXPECTED_ROUND}
    ends = [
        json.loads(line)
        for line in (run_dir / "events.jsonl").read_text().splitlines()
        if '"RoundCompleted"' in line
    ]
    for end in ends:
        assert sorted(end["accepted"]) == ["0", "3"]
        assert set(end["failed"]) == {"1", "2"}
        assert end["failed"]["1"].startswith("dropped in query.hello")
