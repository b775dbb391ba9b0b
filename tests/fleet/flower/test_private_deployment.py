"""End-to-end: secure aggregation with distributed differential privacy over a real
deployment (`fedpilot server` and three `fedpilot learner` processes on loopback, TLS and
learner authentication on, each learner machine with its own secret), ending where the
same spec ends over the LocalFleet; and what the server process is handed from the wire,
in both fleets, holds no individual update.

What the server is handed is kept by the spec's own transform ``wiretap:Wiretap``
(tests/_apps/wiretap.py): the round gives it every training reply as the fleet yields it,
before anything reads it. Over Flower that runs in the ServerApp process, so it records
the reply Messages the ServerApp pulled from the SuperLink (every array record, the
metrics and the learner state, as a fedpilot Reply); there it also keeps every Message of
every exchange (keys, shares, unmasking) as the Grid hands it over."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from _apps.wiretap import tapped, wire
from conftest import APPS_DIR
from fedpilot.launch import initial_weights, run_federation, server_task
from fedpilot.orchestrator.checkpoint import load_checkpoint
from fedpilot.secagg.secret import ENV as SECRET_ENV
from fedpilot.secagg.transform import MASKED
from fedpilot.spec import FederationSpec, validate_spec
from flower_deploy import LEARNERS, Deployment, of

pytestmark = pytest.mark.slow

ROUNDS = 3
PARTITION = {name: partition for partition, name in enumerate(LEARNERS)}
# Small noise, so three learners still learn in three rounds; ε is large, and grows.
DP = {"mode": "distributed", "clip_norm": 1.0, "noise_multiplier": 0.1}
# Wide enough that quantization cuts no coordinate of a clipped, noised delta.
SECURE = {"clip": 2.0}


@pytest.fixture(autouse=True)
def _own_machine_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The in-process learners of the LocalFleet runs use a key file of their own, not
    # the user's; the deployment's learners each get theirs in their environment.
    monkeypatch.delenv(SECRET_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def _wiretap(folder: Path) -> dict[str, Any]:
    return {"name": "wiretap:Wiretap", "params": {"folder": str(folder)}}


def _over_the_local_fleet(spec_path: Path, out: Path, *, secure: bool) -> FederationSpec:
    """The deployment's spec, run in this process over the LocalFleet (``secure``: as it
    is; else without secure aggregation: plain distributed DP)."""
    raw: dict[str, Any] = yaml.safe_load(spec_path.read_text())
    raw["runtime"] = {"mode": "local", "workers": 0}
    raw["output_dir"] = str(out / "runs")
    raw["transforms"] = [_wiretap(out / "tap")]
    if not secure:
        del raw["secure_aggregation"]
        # Secure aggregation skips the cohort checks; plain FedAvg without them too.
        raw["validation"] = {"max_norm_ratio": None, "max_examples_ratio": None}
    return validate_spec(raw)


def _flat(weights: Any) -> np.ndarray:
    return np.concatenate([np.asarray(w, np.float64).ravel() for w in weights])


def _events(output_dir: Path) -> list[dict[str, Any]]:
    """The event log of the one run under ``output_dir``."""
    (run_dir,) = [p for p in output_dir.iterdir() if p.is_dir()]
    lines = (run_dir / "events.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def _assert_sealed(record: dict[str, Any], size: int, true_update: np.ndarray | None) -> None:
    """One training reply as the server was handed it carries the masked vector alone,
    uniform over the ring and uncorrelated with the learner's true update."""
    arrays = sorted(k for k in record if k != "metrics")
    assert arrays == [f"extras/{MASKED}/0"]  # no weights, no state, no other extra
    words = record[f"extras/{MASKED}/0"]
    assert words.dtype == np.uint32 and words.shape == (size,)
    values = words.astype(np.float64)
    # 5σ of a uniform mean and of a chance correlation: masks are fresh randomness each
    # run (an unmasked quantized update would correlate ~1 with the true one).
    assert abs(values.mean() / 2**32 - 0.5) < 5 * np.sqrt(1 / 12 / size)
    if true_update is not None:
        assert np.abs(true_update).max() > 0
        assert abs(np.corrcoef(values, true_update)[0, 1]) < 5 / np.sqrt(size)
    assert all(np.isscalar(v) for v in record["metrics"].values())


def test_secure_aggregation_with_distributed_dp_over_a_tls_deployment(
    deployment: Deployment, tmp_path_factory: pytest.TempPathFactory
) -> None:
    spec_path = deployment.write_spec(
        rounds=ROUNDS,
        weighting={"scheme": "uniform"},  # DP counts every update the same
        privacy=DP,
        secure_aggregation=SECURE,
        transforms=[_wiretap(deployment.root / "tap")],
        base_dir=str(APPS_DIR),  # the ServerApp imports the wiretap from there
    )
    deployment.start_server()
    for name, partition in PARTITION.items():
        # Each learner machine derives its keys and masks from a secret of its own.
        deployment.start_learner(name, partition, env={SECRET_ENV: os.urandom(32).hex()})

    result = deployment.finish()

    assert result["status"] == "completed" and result["rounds_completed"] == ROUNDS
    events = deployment.events()
    ends = of(events, "RoundCompleted")
    assert [e["round"] for e in ends] == list(range(1, ROUNDS + 1))
    for end in ends:
        assert sorted(end["accepted"]) == sorted(LEARNERS) and not end["failed"]
    for round_ in range(1, ROUNDS + 1):
        accepted = [e for e in of(events, "UpdateAccepted") if e["round"] == round_]
        assert sorted(e["learner"] for e in accepted) == sorted(LEARNERS)
    spent = of(events, "PrivacySpent")
    assert [e["round"] for e in spent] == list(range(1, ROUNDS + 1))
    epsilons = [e["epsilon"] for e in spent]
    assert 0 < epsilons[0] < epsilons[1] < epsilons[2]
    for e in spent:
        assert (e["delta"], e["noise_multiplier"], e["clip_norm"]) == (1e-5, 0.1, 1.0)
    assert result["final_metrics"]["accuracy"] > 0.3
    flower = load_checkpoint(deployment.run_dir())
    assert flower.round == ROUNDS

    # The same spec over the LocalFleet, in this process: the same model, bit for bit
    # (other masks, which cancel exactly in the ring; quantization and DP noise follow
    # the per-learner seeds).
    out = tmp_path_factory.mktemp("local")
    local_spec = _over_the_local_fleet(spec_path, out / "secure", secure=True)
    local = run_federation(local_spec)
    assert local.status == "completed"
    start = _flat(initial_weights(local_spec, server_task(local_spec)))
    assert np.abs(_flat(flower.weights) - start).max() > 0.01  # the model moved
    for got, want in zip(flower.weights, local.weights, strict=True):
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)
    assert flower.metrics == local.final_metrics
    # Plain distributed DP (no secure aggregation) gives it up to quantization.
    plain = run_federation(_over_the_local_fleet(spec_path, out / "plain", secure=False))
    assert plain.status == "completed"
    assert np.abs(_flat(plain.weights) - _flat(flower.weights)).max() < 1e-4

    # What the server was handed. The plain run's round-1 replies are the learners' true
    # (clipped, noised) updates: the same seeds, so the secure runs' learners trained them.
    true_updates = {
        int(learner): _flat(
            [record[f"weights/{i}"] for i in range(sum(k.startswith("weights/") for k in record))]
        )
        - start
        for (round_, learner), record in tapped(out / "plain" / "tap").items()
        if round_ == 1
    }
    assert sorted(true_updates) == sorted(PARTITION.values())
    fleets = {
        "flower": (tapped(deployment.root / "tap"), PARTITION),
        "local": (tapped(out / "secure" / "tap"), {str(p): p for p in PARTITION.values()}),
    }
    for taps, partition_of in fleets.values():
        assert sorted(taps) == sorted(
            (r, name) for r in range(1, ROUNDS + 1) for name in partition_of
        )
        for (round_, learner), record in taps.items():
            true = true_updates[partition_of[learner]] if round_ == 1 else None
            _assert_sealed(record, start.size, true)
    # Every Message of every exchange the ServerApp pulled off the wire: a training reply
    # carries one update-sized array, the masked words; the keys, shares and unmasking
    # replies carry only byte strings far smaller than an update.
    pulled = wire(deployment.root / "tap")
    assert {kind for kind, _ in pulled} >= {
        "train",
        "query.secagg_keys",
        "query.secagg_shares",
        "query.secagg_unmask",
    }
    for kind, arrays in pulled:
        large = [a for a in arrays.values() if a.size >= start.size // 10]
        if kind == "train":
            (masked,) = large
            assert masked.dtype == np.uint32 and masked.shape == (start.size,)
        else:
            assert not large, kind
            assert all(a.dtype == np.uint8 for a in arrays.values()), kind


def test_int8_updates_with_dpsgd_over_a_deployment_shrink_the_bytes_on_the_wire(
    deployment: Deployment, tmp_path_factory: pytest.TempPathFactory
) -> None:
    rounds = 2
    dpsgd = {"enabled": True, "noise_multiplier": 1.1, "max_grad_norm": 1.0}
    spec_path = deployment.write_spec(
        rounds=rounds, privacy={"dpsgd": dpsgd}, compression={"codec": "int8"}
    )
    deployment.start_server()
    for name, partition in PARTITION.items():
        deployment.start_learner(name, partition)

    result = deployment.finish()

    assert result["status"] == "completed" and result["rounds_completed"] == rounds
    events = deployment.events()
    # The same spec, and the same without compression, over the LocalFleet.
    out = tmp_path_factory.mktemp("local")
    raw: dict[str, Any] = yaml.safe_load(spec_path.read_text())
    raw["runtime"] = {"mode": "local", "workers": 0}
    local = run_federation(validate_spec({**raw, "output_dir": str(out / "int8")}))
    del raw["compression"]
    fp32 = run_federation(validate_spec({**raw, "output_dir": str(out / "fp32")}))
    assert local.status == fp32.status == "completed"
    # Each learner's upload, as its machine measured it, and the round's uploads as the
    # server counted them, are about a quarter of fp32's (the tracking shows both).
    plain_bytes = {
        (e["round"], e["learner"]): e["metrics"]["sys.bytes_sent"]
        for e in of(_events(out / "fp32"), "UpdateAccepted")
    }
    accepted = of(events, "UpdateAccepted")
    assert sorted((e["round"], e["learner"]) for e in accepted) == sorted(
        (r, name) for r in range(1, rounds + 1) for name in LEARNERS
    )
    for e in accepted:
        sent = e["metrics"]["sys.bytes_sent"]
        assert 0 < sent <= 0.26 * plain_bytes[e["round"], str(PARTITION[e["learner"]])]
    fp32_ends = of(_events(out / "fp32"), "RoundCompleted")
    for end, plain in zip(of(events, "RoundCompleted"), fp32_ends, strict=True):
        assert 0 < end["bytes_received"] <= 0.26 * plain["bytes_received"]
    # Each learner's Opacus accountant, carried in its state on the wire, spent more
    # each round; the model is the LocalFleet's.
    ends = of(events, "RoundCompleted")
    epsilons = [e["privacy"]["privacy.sample_epsilon"] for e in ends]
    assert 0 < epsilons[0] < epsilons[1]
    local_ends = of(_events(out / "int8"), "RoundCompleted")
    assert epsilons == [e["privacy"]["privacy.sample_epsilon"] for e in local_ends]
    flower = load_checkpoint(deployment.run_dir())
    np.testing.assert_allclose(_flat(flower.weights), _flat(local.weights), rtol=1e-5, atol=1e-6)
