"""Compression in whole federations: every codec trains, the bytes the tracking shows are
the encoded payload's, the error-feedback residual is learner state (carried, checkpointed,
resumed bit for bit), the pool and the in-process fleet agree, and a bad section exits 2."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from clitools import EXAMPLES, SMALL_DIGITS, fedpilot
from federations import StopAfter, digits_spec
from fedpilot.compression import Compression
from fedpilot.fleet import Fleet, LocalFleet
from fedpilot.fleet._messages import LearnerJob, run_learner
from fedpilot.fleet.simulation._wrapper import FleetWrapper
from fedpilot.launch import load_run_spec, run_federation
from fedpilot.learner import make_clientapp
from fedpilot.learner.core import TaskLearner
from fedpilot.orchestrator import load_checkpoint
from fedpilot.spec import FederationSpec
from fedpilot.types import Instruction, LearnerId, Reply, RoundContext, weights_nbytes

RESIDUAL = "compression/residual"


def only_run(spec: FederationSpec) -> Path:
    return next(p.parent for p in Path(spec.output_dir).rglob("events.jsonl"))


def events(spec: FederationSpec, name: str) -> list[dict[str, Any]]:
    lines = only_run(spec).joinpath("events.jsonl").read_text().splitlines()
    return [e for e in map(json.loads, lines) if e["event"] == name]


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> FederationSpec:
    spec = digits_spec(tmp_path_factory.mktemp("plain"), "plain", tracking={"enabled": True})
    run_federation(spec)
    return spec


@pytest.mark.parametrize(
    ("section", "share"),
    [
        ({"codec": "fp16"}, 0.5),
        ({"codec": "fp16", "download": True}, 0.5),
        ({"codec": "int8"}, 0.26),
        ({"codec": "topk", "fraction": 0.05}, 0.11),
    ],
    ids=["fp16", "fp16-download", "int8", "topk"],
)
def test_each_codec_trains_and_the_tracking_counts_the_encoded_bytes(
    tmp_path: Path, plain: FederationSpec, section: dict[str, Any], share: float
) -> None:
    spec = digits_spec(tmp_path, "c", compression=section, tracking={"enabled": True})
    result = run_federation(spec)
    assert result.status == "completed"
    base = events(plain, "RoundCompleted")
    rounds = events(spec, "RoundCompleted")
    # It learned: well above chance (10 classes) and as far as the uncompressed run, give
    # or take (4 short rounds of 3 learners).
    assert result.final_metrics["accuracy"] >= 0.2
    assert rounds[-1]["global_metrics"]["loss"] < rounds[0]["global_metrics"]["loss"] + 0.05
    assert abs(rounds[-1]["global_metrics"]["loss"] - base[-1]["global_metrics"]["loss"]) < 0.1
    model = weights_nbytes(result.weights)
    for got, want in zip(rounds, base, strict=True):
        # Uploads (what the server received) shrink by the codec's share; downloads
        # only with `download`.
        assert 0 < got["bytes_received"] <= share * want["bytes_received"]
        assert got["bytes_sent"] == (
            want["bytes_sent"] // 2 if section.get("download") else want["bytes_sent"]
        )
    for update in events(spec, "UpdateAccepted"):
        # Per learner, the learner's own count is the round's: one payload each.
        assert update["bytes_received"] == update["metrics"]["sys.bytes_sent"]
        assert update["metrics"]["sys.bytes_sent"] <= share * model + 64


def test_the_residual_is_learner_state_and_a_resumed_run_is_bit_identical(
    tmp_path: Path,
) -> None:
    topk = {"codec": "topk", "fraction": 0.02}
    whole = run_federation(digits_spec(tmp_path, "whole", compression=topk))
    cut = digits_spec(tmp_path, "cut", compression=topk)
    stopped = run_federation(cut, callbacks=[StopAfter(2)])
    assert stopped.status == "interrupted" and stopped.rounds_completed == 2
    run_dir = next(p for p in Path(cut.output_dir).iterdir() if (p / "checkpoints").is_dir())
    kept = load_checkpoint(run_dir).components["learner_state"]
    trained = [k for k, state in kept.items() if RESIDUAL in state]
    assert trained  # every learner that trained keeps what top-k held back
    for learner in trained:
        residual = kept[learner][RESIDUAL]
        assert [r.dtype for r in residual] == [np.float32] * len(residual)
        assert sum(float(np.abs(r).sum()) for r in residual) > 0
    resumed = run_federation(load_run_spec(run_dir), resume_dir=run_dir)
    assert resumed.status == "completed"
    for got, want in zip(resumed.weights, whole.weights, strict=True):
        np.testing.assert_array_equal(got, want)
    assert resumed.final_metrics == whole.final_metrics
    whole_dir = next(p for p in (tmp_path / "whole").iterdir() if (p / "checkpoints").is_dir())
    ends = [load_checkpoint(d).components["learner_state"] for d in (run_dir, whole_dir)]
    assert sorted(ends[0]) == sorted(ends[1])
    for learner in ends[0]:
        for a, b in zip(ends[0][learner][RESIDUAL], ends[1][learner][RESIDUAL], strict=True):
            np.testing.assert_array_equal(a, b)


def test_without_error_feedback_top_k_keeps_no_state(tmp_path: Path) -> None:
    spec = digits_spec(
        tmp_path, "noef", rounds=2, compression={"codec": "topk", "error_feedback": False}
    )
    run_federation(spec)
    run_dir = next(p for p in Path(spec.output_dir).iterdir() if (p / "checkpoints").is_dir())
    states = load_checkpoint(run_dir).components["learner_state"]
    assert not any(RESIDUAL in s for s in states.values())


def test_the_process_pool_gives_the_in_process_result(tmp_path: Path) -> None:
    section = {"codec": "int8", "error_feedback": True}
    results = [
        run_federation(
            digits_spec(
                tmp_path, f"w{w}", compression=section, runtime={"mode": "local", "workers": w}
            )
        )
        for w in (0, 2)
    ]
    # Seeded stochastic rounding: the same bytes from each learner in either fleet; the
    # pool folds in arrival order, so the sums differ in the last bits only.
    for got, want in zip(results[1].weights, results[0].weights, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(
    ("setting", "names"),
    [
        ("compression.codec=zip", ["compression.codec", "zip"]),
        ("compression.fraction=1.5", ["compression.fraction", "1.5"]),
        ("compression.download=true", ["compression.download", "codec='none'"]),
    ],
)
def test_a_bad_compression_section_exits_2_naming_the_field(
    tmp_path: Path, setting: str, names: list[str]
) -> None:
    out = fedpilot(
        "run", str(EXAMPLES / "digits.yaml"), *SMALL_DIGITS, "--set", setting, cwd=tmp_path
    )
    assert out.returncode == 2, out.stderr
    assert all(name in out.stderr for name in names), out.stderr
    assert "Traceback" not in out.stderr


def test_int8_download_is_refused_naming_both_fields(tmp_path: Path) -> None:
    out = fedpilot(
        "spec", "check", str(EXAMPLES / "digits.yaml"),
        "--set", "compression.codec=int8", "--set", "compression.download=true",
        cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 2
    assert "compression.download" in out.stderr and "codec='int8'" in out.stderr


def test_the_flower_clientapp_sends_the_same_payload_and_state_as_the_direct_learner(
    tmp_path: Path,
) -> None:
    """The Flower Message path (ArrayRecords both ways) keeps the codec's dtypes and the
    residual in the learner's state, and counts what it really carries."""
    spec = digits_spec(
        tmp_path, "wire", compression={"codec": "topk", "fraction": 0.05, "download": False}
    )
    model = TaskLearner(spec).task.get_weights()
    residual = [np.full(w.shape, 1e-3, np.float32) for w in model]
    train = Instruction("train", model, {"server-round": 2, "seed": 11}, {}, {RESIDUAL: residual})
    job = LearnerJob("1", 1, 6, train, None, {}, "m1")
    wire, _ = run_learner(make_clientapp(spec), job)
    direct, _ = run_learner(TaskLearner(spec), job)
    for reply in (wire, direct):
        assert reply.ok, reply.error
        assert [a.dtype for a in reply.weights] == [np.int32, np.float32] * len(model)
        assert reply.state is not None and len(reply.state[RESIDUAL]) == len(model)
    # The direct learner counts the payload; over Flower the learner's state (the residual,
    # dense fp32) rides in the same message and is counted too: error feedback's price.
    payload = weights_nbytes(direct.weights)
    assert direct.bytes_received == payload
    assert wire.bytes_received == payload + weights_nbytes(residual)
    # Either way the learner reports what its state weighs, apart from the payload.
    for reply in (wire, direct):
        assert reply.metrics["sys.state_bytes_received"] == weights_nbytes(residual)
        assert reply.metrics["sys.state_bytes_sent"] == weights_nbytes(residual)
    for a, b in zip(wire.weights, direct.weights, strict=True):
        np.testing.assert_array_equal(a, b)
    assert wire.state is not None and direct.state is not None
    for a, b in zip(wire.state[RESIDUAL], direct.state[RESIDUAL], strict=True):
        np.testing.assert_array_equal(a, b)
    ctx = RoundContext(run_id="r", round=2, total_rounds=4, seed=7)
    decoded = Compression("topk", fraction=0.05).on_reply(wire, reference=model, ctx=ctx)
    assert [w.shape for w in decoded.weights] == [w.shape for w in model]


class Uncompressed(FleetWrapper):
    """The real fleet, but learner ``who`` answers training with the float32 model it was
    sent, as a learner that does not speak the codec would."""

    def __init__(self, inner: Fleet, who: LearnerId) -> None:
        super().__init__(inner)
        self.who = who

    def dispatch(
        self, instructions: Mapping[LearnerId, Instruction], *, deadline: float
    ) -> Iterator[Reply]:
        for reply in self.inner.dispatch(instructions, deadline=deadline):
            if reply.learner == self.who and reply.kind == "train" and reply.ok:
                sent = instructions[reply.learner].weights
                reply = replace(reply, weights=[np.asarray(w, np.float32) for w in sent])
            yield reply


def test_an_undecodable_update_is_refused_once_and_never_folded(tmp_path: Path) -> None:
    # A plausible float32 model where fp16 deltas were due: the validator alone would
    # take it, so the refusal must end the reply's way.
    spec = digits_spec(
        tmp_path, "c", compression={"codec": "fp16"}, rounds=1, sampling={"fraction": 1.0}
    )
    result = run_federation(spec, fleet=Uncompressed(LocalFleet(spec), "0"))
    assert result.status == "completed"
    (rejected,) = events(spec, "UpdateRejected")
    assert rejected["learner"] == "0" and "undecodable update" in rejected["reason"]
    assert "0" not in {e["learner"] for e in events(spec, "UpdateAccepted")}
    (end,) = events(spec, "RoundCompleted")
    assert "0" not in end["accepted"] and len(end["accepted"]) == 5
