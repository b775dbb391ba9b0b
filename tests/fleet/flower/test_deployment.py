"""End-to-end: a federation across processes on loopback over Flower's engine."""

from __future__ import annotations

import os
import signal
from typing import Any

import numpy as np
import pytest

from fedpilot.orchestrator.checkpoint import load_checkpoint
from fedpilot.security.keys import public_key_fingerprint
from flower_deploy import LEARNERS, Deployment, of, round_completed

pytestmark = pytest.mark.slow


def _start_all(deployment: Deployment) -> None:
    for partition, name in enumerate(LEARNERS):
        deployment.start_learner(name, partition)


def test_tls_and_authenticated_learners_complete_three_rounds(deployment: Deployment) -> None:
    deployment.write_spec(rounds=3)
    deployment.start_server()
    _start_all(deployment)
    rogue_pub = deployment.credentials.rogue_key.with_suffix(".pub").read_text()
    deployment.start_learner("rogue", 0, deployment.credentials.rogue_key, "--refused-grace", "0")

    result = deployment.finish()

    assert result["status"] == "completed" and result["rounds_completed"] == 3
    assert result["final_metrics"]["accuracy"] > 0.3
    events = deployment.events()
    for completed in of(events, "RoundCompleted"):
        assert sorted(completed["participants"]) == sorted(LEARNERS)
        assert sorted(completed["accepted"]) == sorted(LEARNERS)
        assert completed["learners_online"] == 3
    # Every learner reports what the work cost its machine.
    accepted = of(events, "UpdateAccepted")
    assert {e["learner"] for e in accepted} == set(LEARNERS)
    for update in accepted:
        for metric in ("cpu_seconds", "peak_rss_mb", "bytes_sent", "bytes_received"):
            assert update["metrics"][f"sys.{metric}"] > 0
    # The learner whose key is not on the allow-list is refused, and that is recorded.
    rogue = deployment.learners["rogue"]
    assert rogue.wait(60) == 3
    refused = of(events, "LearnerRefused")
    assert refused and refused[0]["learner"] == public_key_fingerprint(rogue_pub)
    assert "rogue" not in {e["learner"] for e in of(events, "LearnerJoined")}


def test_dead_learner_fails_its_round_late_and_restarted_learners_join(
    deployment: Deployment,
) -> None:
    # Nothing here depends on how fast the machine is: rounds have a deadline none comes
    # near, learners count as joined only once they can take work, and the round beta
    # fails is found from the events, not guessed from timing.
    deployment.write_spec(rounds=60, **{"runtime.min_learners_to_start": 2})
    server = deployment.start_server()
    deployment.start_learner("alpha", 0)
    deployment.start_learner("beta", 1)
    events = deployment.wait_for(lambda events: bool(of(events, "RoundCompleted")))
    first = of(events, "RoundCompleted")[0]
    # Both learners were warm when they joined, so the first round was theirs.
    assert first["round"] == 1 and sorted(first["accepted"]) == ["alpha", "beta"]

    # gamma starts after round 1 and takes part from the round after it registered.
    deployment.start_learner("gamma", 2)
    joined = deployment.wait_for(
        lambda events: any(e["learner"] == "gamma" for e in of(events, "LearnerJoined"))
    )
    join_round = next(e["round"] for e in of(joined, "LearnerJoined") if e["learner"] == "gamma")
    assert join_round > 1

    # beta dies: SIGKILL to it and its SuperNode, no goodbye to the server. The server
    # sends it work until the SuperLink misses its heartbeats; the round it fails is
    # the first one after gamma joined that counts beta among its failures.
    deployment.wait_for(
        lambda events: any(e["round"] > join_round for e in of(events, "RoundStarted"))
    )
    deployment.kill_learner("beta")
    events = deployment.wait_for(lambda events: bool(_failed_by(events, "beta", join_round)))
    killed = _failed_by(events, "beta", join_round)
    killed_round = killed["round"]

    # Restarted, beta is let in once the server has seen its old session time out, and
    # trains again.
    deployment.start_learner("beta", 1)
    deployment.wait_for(
        lambda events: any(
            e["learner"] == "beta" and e["round"] > killed_round
            for e in of(events, "UpdateAccepted")
        ),
        timeout=300,
    )
    server.send_signal(signal.SIGINT)  # Ctrl-C: the server stops the run and its children
    out, _ = server.communicate(timeout=60)
    assert server.returncode == 130
    assert '"status": "interrupted"' in out

    events = deployment.events()
    assert "gamma" not in _ended(events, 1)["participants"]
    assert "gamma" in _ended(events, join_round)["accepted"]
    assert killed["event"] == "RoundCompleted"  # the others' updates made the round
    assert {"alpha", "gamma"} <= set(killed["accepted"])


def _failed_by(events: list[dict[str, Any]], learner: str, after: int) -> dict[str, Any]:
    """The first round after ``after`` that ended with ``learner`` failed ({} if none)."""
    ends = of(events, "RoundCompleted") + of(events, "RoundFailed")
    failed = [e for e in ends if e["round"] > after and learner in e.get("failed", [])]
    return min(failed, key=lambda e: e["round"], default={})


def _ended(events: list[dict[str, Any]], round_: int) -> dict[str, Any]:
    """The RoundCompleted/RoundFailed event of ``round_`` ({} if it has not ended)."""
    ends = of(events, "RoundCompleted") + of(events, "RoundFailed")
    return next((e for e in ends if e["round"] == round_), {})


def test_server_killed_after_round_two_resumes_to_the_same_model(
    deployment: Deployment, tmp_path_factory: pytest.TempPathFactory
) -> None:
    reference = Deployment(tmp_path_factory.mktemp("reference"), deployment.credentials)
    try:
        for d in (reference, deployment):
            d.write_spec(rounds=4)
            d.start_server()
            _start_all(d)
        reference_result = reference.finish()

        deployment.wait_for(round_completed(2))
        assert deployment.server is not None
        os.kill(deployment.server.pid, signal.SIGKILL)
        deployment.server.wait()
        run_dir = deployment.run_dir()
        assert load_checkpoint(run_dir).round >= 2

        deployment.start_server("--resume")
        result = deployment.finish()
    finally:
        reference.close()

    assert result["status"] == reference_result["status"] == "completed"
    assert result["run_dir"] == str(run_dir)
    resumed = load_checkpoint(run_dir)
    uninterrupted = load_checkpoint(reference.run_dir())
    assert resumed.round == uninterrupted.round == 4
    for a, b in zip(resumed.weights, uninterrupted.weights, strict=True):
        np.testing.assert_array_equal(a, b)
