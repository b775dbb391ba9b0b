"""Fuzzing the update path (issue 13, "Done means"): 2 of 10 learners (20%) of a
Flower-convention ClientApp fleet answer every train and evaluate message with a random
bad reply (:mod:`fuzz_apps`: shapes, dtypes, magnitudes, NaN/inf, lying and malformed
``num-examples`` in train and evaluate replies, missing, mistyped and extra records).
The run never crashes, every bad reply is refused with a reason, and the model is the
one the 8 honest learners reach alone, within ``TOLERANCE``."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fedpilot.launch import run_federation
from fedpilot.orchestrator.events import RunResult
from fedpilot.spec import FederationSpec, validate_spec
from hardening.fuzz_apps import corruption

APP_DIR = Path(__file__).parent
LEARNERS, FUZZERS, ROUNDS = 10, 2, 12
SEEDS = range(4)
TOLERANCE = 1e-6
"""Largest difference in any weight from the honest learners' model: every bad reply
is refused, so only the order of float sums could differ (here it does not)."""


def fuzz_spec(tmp_path: Path, seed: int) -> FederationSpec:
    return validate_spec(
        {
            "name": f"fuzz-{seed}",
            "seed": 11,
            "task": {
                "flower_clientapp": "fuzz_apps:app",
                "initial_weights": "fuzz_apps:initial_weights",
                "run_config": {"fuzzers": FUZZERS, "fuzz-seed": seed},
            },
            "data": {"num_learners": LEARNERS},
            "rounds": ROUNDS,
            "sampling": {"fraction": 1.0, "min_learners": 3},
            "evaluation": {"federated_every": 1},
            "tracking": {"enabled": False},
            "runtime": {"mode": "local", "workers": 0, "round_timeout": 60},
            "output_dir": str(tmp_path / f"seed-{seed}"),
            "base_dir": str(APP_DIR),
        }
    )


def events(spec: FederationSpec) -> list[dict[str, Any]]:
    (run_dir,) = [p for p in Path(spec.output_dir).iterdir() if p.is_dir()]
    return [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def alone(tmp_path_factory: pytest.TempPathFactory) -> RunResult:
    """The honest learners alone: the fuzzers fail every message."""
    result = run_federation(fuzz_spec(tmp_path_factory.mktemp("alone"), -1))
    assert result.status == "completed" and result.final_metrics["accuracy"] > 0.85
    return result


@pytest.mark.slow  # ~5 s a seed
@pytest.mark.parametrize("seed", SEEDS)
def test_bad_replies_from_a_fifth_of_the_learners_are_all_refused_with_a_reason(
    tmp_path: Path, seed: int, alone: RunResult
) -> None:
    spec = fuzz_spec(tmp_path, seed)
    result = run_federation(spec)  # never raises
    assert (result.status, result.rounds_completed) == ("completed", ROUNDS)
    log = events(spec)
    fuzzers = {str(p) for p in range(FUZZERS)}

    # Training: every fuzzer's reply, every round, refused (rejected, or failed when
    # it could not be read) with a reason; every honest one accepted.
    verdicts = {(e["round"], e["learner"]): e for e in log if e["event"].startswith("Update")}
    generated: Counter[str] = Counter()
    for round_ in range(1, ROUNDS + 1):
        for learner in range(LEARNERS):
            event = verdicts[(round_, str(learner))]
            if str(learner) in fuzzers:
                what, _ = corruption(seed, round_, learner, "train")
                generated["train:" + what] += 1
                assert event["event"] in ("UpdateRejected", "UpdateFailed"), (what, event)
                assert event["reason"], (what, event)
            else:
                assert event["event"] == "UpdateAccepted", event

    # Evaluation (the initial model's and every round's): every fuzzer's reply refused.
    refused = {
        (e["round"], e["message"].split()[1].removesuffix("'s"))
        for e in log
        if e["event"] == "Warning" and e["code"] == "evaluation-refused"
    }
    for round_ in range(ROUNDS + 1):
        for learner in range(FUZZERS):
            generated["evaluate:" + corruption(seed, round_, learner, "evaluate")[0]] += 1
        assert {k for r, k in refused if r == round_} == fuzzers, round_

    for got, want in zip(result.weights, alone.weights, strict=True):
        assert np.max(np.abs(got - want)) <= TOLERANCE
    assert result.final_metrics["accuracy"] == pytest.approx(alone.final_metrics["accuracy"])
    print(f"seed {seed}: {sum(generated.values())} bad replies, all refused: {dict(generated)}")
