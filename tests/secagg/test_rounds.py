"""Secure aggregation through whole rounds over the LocalFleet: what the round is handed
from the fleet holds no individual update, learners dropping after masking are recovered,
too many dropping fails the round safely, and training matches plain FedAvg."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from clitools import fedpilot
from federations import digits_spec
from fedpilot.fleet import Fleet, LocalFleet
from fedpilot.fleet.simulation._wrapper import FleetWrapper, failed
from fedpilot.launch import initial_weights, run_federation, server_task
from fedpilot.secagg.graph import pack, unpack
from fedpilot.spec import FederationSpec
from fedpilot.types import Instruction, LearnerId, Reply

UNMASK = "query.secagg_unmask"


class Wire(FleetWrapper):
    """The real fleet, with a record of every reply the round is handed; the learners in
    ``lost`` lose their connection at the ``at`` exchange (by default after uploading
    their masked update)."""

    def __init__(self, inner: Fleet, lost: frozenset[str] = frozenset(), at: str = UNMASK) -> None:
        super().__init__(inner)
        self.lost, self.at = lost, at
        self.replies: list[Reply] = []

    def dispatch(
        self, instructions: Mapping[LearnerId, Instruction], *, deadline: float
    ) -> Iterator[Reply]:
        sent = {k: v for k, v in instructions.items() if not (v.kind == self.at and k in self.lost)}
        for learner in sorted(set(instructions) - set(sent)):
            yield failed(learner, instructions[learner], "connection lost")
        for reply in self.inner.dispatch(sent, deadline=deadline):
            self.replies.append(reply)
            yield reply


def spec(
    tmp_path: Path, name: str, *, secure: bool, rounds: int = 1, **changes: Any
) -> FederationSpec:
    extra: dict[str, Any] = {"secure_aggregation": {"clip": 1.0}} if secure else {}
    return digits_spec(
        tmp_path,
        name,
        data={"num_learners": 10},
        sampling={"fraction": 1.0, "min_learners": 1},
        rounds=rounds,
        # Plain FedAvg weighed like secure aggregation's mean, without its skipped checks.
        weighting={"scheme": "uniform"},
        validation={"max_norm_ratio": None, "max_examples_ratio": None} if not secure else {},
        **extra,
        **changes,
    )


def run(
    s: FederationSpec, lost: frozenset[str] = frozenset(), workers: int = 0, at: str = UNMASK
) -> tuple[Any, Wire]:
    wire = Wire(LocalFleet(s, workers=workers), lost, at)
    return run_federation(s, fleet=wire), wire


def flat(weights: Any) -> np.ndarray:
    return np.concatenate([np.asarray(w, np.float64).ravel() for w in weights])


def events(s: FederationSpec) -> list[dict[str, Any]]:
    (run_dir,) = [p for p in Path(s.output_dir).iterdir() if p.is_dir()]
    return [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]


def initial(s: FederationSpec) -> np.ndarray:
    return flat(initial_weights(s, server_task(s)))


def test_the_round_is_handed_masked_updates_only(tmp_path: Path) -> None:
    plain_spec = spec(tmp_path, "plain", secure=False)
    plain, plain_wire = run(plain_spec)
    secure, secure_wire = run(spec(tmp_path, "secure", secure=True))
    assert plain.status == secure.status == "completed"
    start = initial(plain_spec)
    # Same seed, same learner seeds: the secure run's learners trained these same models.
    trained = {r.learner: flat(r.weights) for r in plain_wire.replies if r.kind == "train"}
    trains = [r for r in secure_wire.replies if r.kind == "train"]
    assert len(trains) == len(trained) == 10
    for reply in trains:
        assert reply.weights == []  # nothing readable beside the masked vector
        (masked,) = reply.extras["secagg/masked"]
        assert masked.dtype == np.uint32 and masked.size == start.size
        words = np.asarray(masked, np.float64)
        delta = trained[reply.learner] - start
        assert np.abs(delta).max() > 0
        # Uniform over the ring and uncorrelated with the learner's true update.
        # (5σ of a uniform mean: the masks are fresh randomness each run)
        assert abs(words.mean() / 2**32 - 0.5) < 5 * np.sqrt(1 / 12 / words.size)
        # (an unmasked quantized update would correlate ~1; 5σ of chance correlation)
        assert abs(np.corrcoef(words, delta)[0, 1]) < 5 / np.sqrt(delta.size)
    # No reply of any exchange carries a learner's trained weights or its update.
    for reply in secure_wire.replies:
        for arrays in [reply.weights, *reply.extras.values()]:
            for a in arrays:
                a = np.asarray(a)
                for model in trained.values():
                    if a.size == model.size:
                        values = a.astype(np.float64).ravel()
                        assert not np.allclose(values, model)
                        assert not np.allclose(values, model - start)


def test_a_tenth_dropping_after_masking_is_recovered(tmp_path: Path) -> None:
    plain, _ = run(spec(tmp_path, "plain", secure=False))
    secure_spec = spec(tmp_path, "secure", secure=True)
    secure, wire = run(secure_spec, lost=frozenset({"3"}))
    assert secure.status == "completed"
    # The lost learner uploaded its masked update, then never answered the unmasking.
    assert any(r.kind == "train" and r.learner == "3" for r in wire.replies)
    assert not any(r.kind == UNMASK and r.learner == "3" for r in wire.replies)
    assert np.max(np.abs(flat(secure.weights) - flat(plain.weights))) < 1e-5
    assert not np.allclose(flat(secure.weights), initial(secure_spec))
    warnings = [e for e in events(secure_spec) if e["event"] == "Warning"]
    assert any("learner 3" in w["message"] for w in warnings)


def test_a_learner_lost_between_sharing_and_upload_has_its_pairwise_masks_removed(
    tmp_path: Path,
) -> None:
    # Its neighbours masked toward it; the server rebuilds its mask key from their shares.
    plain, _ = run(spec(tmp_path, "plain", secure=False), lost=frozenset({"5"}), at="train")
    secure, _ = run(spec(tmp_path, "secure", secure=True), lost=frozenset({"5"}), at="train")
    assert plain.status == secure.status == "completed"
    assert np.max(np.abs(flat(secure.weights) - flat(plain.weights))) < 1e-5


def test_below_the_threshold_the_round_fails_and_keeps_the_model(tmp_path: Path) -> None:
    s = spec(tmp_path, "secure", secure=True)
    secure, _ = run(s, lost=frozenset(str(i) for i in range(7)))
    assert secure.history[0].status == "failed"
    assert np.array_equal(flat(secure.weights), initial(s))
    log = events(s)
    (end,) = [e for e in log if e["event"] == "RoundFailed"]
    assert "threshold" in end["reason"] and "keeps its model" in end["reason"]
    (failed,) = [e for e in log if e["event"] == "SecureAggregationFailed"]
    assert failed["round"] == 1 and failed["reason"] == end["reason"]


class AlteredShares(Wire):
    """The fleet with hostile neighbours: every unmasking answer's share of ``target``'s
    mask-key seed has its last byte flipped."""

    def __init__(self, inner: Fleet, target: str) -> None:
        super().__init__(inner, frozenset({target}), at="train")
        self.target = target

    def dispatch(
        self, instructions: Mapping[LearnerId, Instruction], *, deadline: float
    ) -> Iterator[Reply]:
        for reply in super().dispatch(instructions, deadline=deadline):
            if reply.kind == UNMASK and reply.ok:
                answer = unpack(reply.extras["answer"][0])
                share = answer["s"].get(self.target)  # [index, value in hex]
                if share:
                    value = bytes.fromhex(share[1])
                    share[1] = (value[:-1] + bytes([value[-1] ^ 1])).hex()
                reply.extras["answer"] = [pack(answer)]
            yield reply


def test_altered_shares_of_a_dropped_learner_fail_the_round_and_keep_the_model(
    tmp_path: Path,
) -> None:
    s = spec(tmp_path, "secure", secure=True)
    wire = AlteredShares(LocalFleet(s, workers=0), target="5")
    result = run_federation(s, fleet=wire)
    assert result.history[0].status == "failed"
    assert np.array_equal(flat(result.weights), initial(s))
    (failed,) = [e for e in events(s) if e["event"] == "SecureAggregationFailed"]
    assert "5" in failed["reason"]


@pytest.mark.parametrize("workers", [0, 2], ids=["in-process", "pool"])
def test_a_secure_federation_trains_like_plain_fedavg(tmp_path: Path, workers: int) -> None:
    setup: dict[str, Any] = {
        "rounds": 6,
        "runtime": {"mode": "local", "workers": workers},
        "local": {"epochs": 2, "momentum": 0.9},
    }
    plain, _ = run(spec(tmp_path, "plain", secure=False, **setup), workers=workers)
    secure, _ = run(spec(tmp_path, "secure", secure=True, **setup), workers=workers)
    assert plain.status == secure.status == "completed"
    accuracy = plain.final_metrics["accuracy"]
    assert accuracy > 0.7
    assert abs(secure.final_metrics["accuracy"] - accuracy) <= 0.02


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"aggregation": {"rule": "median"}}, "aggregation.rule"),
        ({"validation": {"norm_outlier_z": 3.0}}, "validation.norm_outlier_z"),
        ({"validation": {"max_norm_ratio": 5.0}}, "validation.max_norm_ratio"),
        ({"weighting": {"scheme": "adaptive"}}, "weighting.scheme"),
        ({"strategy": {"name": "scaffold"}}, "strategy.name"),
        ({"privacy": {"mode": "central"}, "weighting": {"scheme": "uniform"}}, "privacy.mode"),
        ({"compression": {"codec": "int8"}}, "compression.codec"),
    ],
)
def test_a_combination_that_cannot_work_exits_2_naming_both_fields(
    tmp_path: Path, change: dict[str, Any], field: str
) -> None:
    raw = {
        "name": "refused",
        "task": {"name": "digits-mlp"},
        "secure_aggregation": {"threshold": 0.6},
        **change,
    }
    path = tmp_path / "spec.yaml"
    path.write_text(json.dumps(raw))  # JSON is YAML
    out = fedpilot("spec", "check", str(path), cwd=tmp_path)
    assert out.returncode == 2, out.stdout
    assert field in out.stderr and "secure_aggregation" in out.stderr
    assert "Traceback" not in out.stderr


def test_distributed_dp_composes_with_secure_aggregation_and_dropouts(tmp_path: Path) -> None:
    # Learners clip and noise before masking; the server's sum equals plain distributed
    # DP's up to quantization, including a learner lost after masking, and ε is spent.
    dp = {"mode": "distributed", "clip_norm": 0.5, "noise_multiplier": 1.0}
    setup: dict[str, Any] = {"rounds": 2, "privacy": dp}
    plain, _ = run(spec(tmp_path, "plain", secure=False, **setup), lost=frozenset({"3"}))
    secure_spec = spec(tmp_path, "secure", secure=True, **setup)
    secure, wire = run(secure_spec, lost=frozenset({"3"}))
    assert plain.status == secure.status == "completed"
    assert not any(r.kind == UNMASK and r.learner == "3" for r in wire.replies)
    assert np.max(np.abs(flat(secure.weights) - flat(plain.weights))) < 1e-4
    assert not np.allclose(flat(secure.weights), initial(secure_spec))
    spent = [e for e in events(secure_spec) if e["event"] == "PrivacySpent"]
    assert [e["round"] for e in spent] == [1, 2]
    assert 0 < spent[0]["epsilon"] < spent[1]["epsilon"]


def test_data_size_weighting_is_said_not_to_apply(tmp_path: Path) -> None:
    s = digits_spec(
        tmp_path,
        "secure",
        data={"num_learners": 4},
        sampling={"fraction": 1.0, "min_learners": 1},
        rounds=1,
        secure_aggregation={"clip": 1.0},
    )
    assert s.weighting.scheme == "data_size"  # the default
    assert run_federation(s).status == "completed"
    (note,) = [e for e in events(s) if e["event"] == "Warning" and e["code"] == "weighting"]
    assert "unweighted mean" in note["message"]
