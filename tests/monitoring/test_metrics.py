"""A run's Prometheus metrics: served over HTTP while it runs, in step with its events,
per run (no shared registry), with bounded per-learner series and fixed rejection reasons."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from clitools import fedpilot
from conftest import app_spec
from fedpilot.errors import SpecError
from fedpilot.launch import run_federation
from fedpilot.monitoring import FederationMetrics
from fedpilot.monitoring.expr import collect
from fedpilot.monitoring.metrics import GLOBAL
from fedpilot.monitoring.reasons import REJECTION_REASONS, rejection_reason
from fedpilot.orchestrator.events import (
    Callback,
    PrivacyLoss,
    RoundSummary,
    RunInfo,
    UpdateVerdict,
)
from fedpilot.rundir import RunDir
from fedpilot.types import Reply, RoundContext
from fedpilot.validation import UpdateValidator

Scraped = dict[str, dict[tuple[tuple[str, str], ...], float]]


def _parse(text: str) -> Scraped:
    samples: Scraped = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


class _Scraper(Callback):
    """Scrapes the run's endpoint over HTTP at the end of every round."""

    def __init__(self) -> None:
        self.url = ""
        self.scrapes: list[Scraped] = []
        self.summaries: list[RoundSummary] = []

    def on_run_start(self, *, run: RunInfo) -> None:
        self.url = RunDir(run.run_dir).metrics_url.read_text().strip()

    def on_round_end(self, *, ctx: RoundContext, summary: RoundSummary) -> None:
        self.summaries.append(summary)
        self.scrapes.append(_parse(httpx.get(self.url, timeout=5).text))


def test_the_endpoint_serves_the_runs_metrics_while_it_runs(tmp_path: Path) -> None:
    # Learner 1 sends NaNs (rejected), learner 2 raises (failed), the rest are accepted.
    spec = app_spec(
        tmp_path,
        task={
            "flower_clientapp": "testapps:app",
            "initial_weights": "testapps:initial_weights",
            "run_config": {"nan-partition": 1, "raise-partition": 2},
        },
        runtime={"mode": "local", "workers": 0, "metrics_port": 0},
    )
    scraper = _Scraper()
    result = run_federation(spec, callbacks=[scraper])
    assert result.status == "completed"
    assert scraper.url.startswith("http://127.0.0.1:")
    last, summary = scraper.scrapes[-1], scraper.summaries[-1]
    rounds = len(scraper.summaries)
    assert last["fedpilot_round"][()] == rounds == 3
    assert last["fedpilot_participants"][()] == len(summary.participants) == 5
    assert last["fedpilot_learners_online"][()] == 5
    updates = last["fedpilot_updates_total"]
    assert updates[(("outcome", "accepted"),)] == 3 * rounds
    assert updates[(("outcome", "rejected"),)] == rounds
    assert updates[(("outcome", "failed"),)] == rounds
    assert last["fedpilot_updates_rejected_total"][(("reason", "non_finite"),)] == rounds
    assert len(last["fedpilot_updates_rejected_total"]) == len(REJECTION_REASONS)
    assert last["fedpilot_participation_ratio"][()] == pytest.approx(3 / 5)
    assert last["fedpilot_round_duration_seconds_count"][()] == rounds
    assert last["fedpilot_update_latency_seconds_count"][()] == 4 * rounds  # what arrived
    assert last["fedpilot_global_metric"][(("name", "accuracy"),)] == pytest.approx(
        summary.global_metrics["accuracy"]
    )
    # The round's bytes are the server's: sent goes down to the learners, received comes
    # up from them. The learner that raises got the model but sent nothing back.
    sent = sum(s.bytes_sent for s in scraper.summaries)
    received = sum(s.bytes_received for s in scraper.summaries)
    assert sent > received > 0
    assert last["fedpilot_bytes_total"][(("direction", "download"),)] == sent
    assert last["fedpilot_bytes_total"][(("direction", "upload"),)] == received
    assert last["fedpilot_learners_seen"][()] == 4  # the failing learner never replied
    # ... but it was asked every round: its silence counts from the first time.
    assert len(last["fedpilot_learner_last_seen_seconds"]) == 5
    assert "fedpilot_privacy_epsilon" not in last  # no DP, no series
    # Once the run ends the endpoint is gone, and so is its address.
    (run_dir,) = list(spec.output_dir.glob("testapp-*"))
    assert not RunDir(run_dir).metrics_url.exists()
    with pytest.raises(httpx.ConnectError):
        httpx.get(scraper.url, timeout=5)


def test_each_run_has_its_own_registry() -> None:
    # The process-wide registry would refuse the second set of the same names.
    first, second = FederationMetrics(), FederationMetrics()
    first.rollbacks.inc()
    assert collect(second.registry)["fedpilot_rollbacks_total"][()] == 0


def _ctx(round_: int = 1) -> RoundContext:
    return RoundContext(run_id="r", round=round_, total_rounds=10, seed=0, num_learners=10_000)


def test_ten_thousand_learners_make_a_bounded_number_of_series() -> None:
    metrics = FederationMetrics(learner_labels=100)
    ctx = _ctx()
    for i in range(10_000):
        verdict = UpdateVerdict(False, f"array 0 has shape ({i},), the global model's is (3,)")
        metrics.on_update(ctx=ctx, learner=f"learner-{i}", verdict=verdict)
    samples = collect(metrics.registry)
    shown = samples["fedpilot_learner_last_seen_seconds"]
    assert len(shown) == 100
    # The learners seen longest ago are the ones shown: those a silence alert is about.
    assert {dict(labels)["learner"] for labels in shown} == {f"learner-{i}" for i in range(100)}
    assert samples["fedpilot_learners_seen"][()] == 10_000
    assert samples["fedpilot_updates_rejected_total"][(("reason", "shape"),)] == 10_000
    assert all(len(vector) <= 100 for vector in samples.values())


class _Finding:
    """A drift finding as the drift part reports it (the fields the exporter reads)."""

    def __init__(self, learner: str | None, feature: str, score: float) -> None:
        self.learner, self.feature, self.score = learner, feature, score


def test_drift_scores_are_bounded_and_expire() -> None:
    metrics = FederationMetrics(learner_labels=3, drift_hold_rounds=2)
    for i in range(5):
        metrics.on_drift(round=1, finding=_Finding(f"l-{i}", "label", 0.1 * i))
    metrics.on_drift(round=1, finding=_Finding(None, "accuracy", 2.5))
    drift = collect(metrics.registry)["fedpilot_drift_score"]
    # The three most recent learners (the global model counts as one) keep their series.
    assert {dict(k)["learner"] for k in drift} == {"l-3", "l-4", GLOBAL}
    assert drift[(("feature", "accuracy"), ("learner", GLOBAL))] == 2.5
    summary = _summary(round_=2)
    metrics.on_round_end(ctx=_ctx(2), summary=summary)
    assert len(collect(metrics.registry)["fedpilot_drift_score"]) == 3
    metrics.on_round_end(ctx=_ctx(3), summary=_summary(round_=3))
    assert collect(metrics.registry).get("fedpilot_drift_score", {}) == {}


def _summary(*, round_: int, status: str = "completed", accuracy: float = 0.5) -> RoundSummary:
    return RoundSummary(
        round=round_,
        status=status,  # type: ignore[arg-type]
        participants=("a", "b"),
        accepted=("a",),
        rejected={},
        failed={},
        train_loss=None,
        candidate_metrics={},
        global_metrics={"accuracy": accuracy},
        learner_metrics={},
        duration=0.1,
        bytes_sent=10,
        bytes_received=20,
    )


def test_decline_rollbacks_in_a_row_and_privacy() -> None:
    metrics = FederationMetrics()
    metrics.on_round_start(ctx=_ctx(1), participants=("a", "b"))
    for round_, (status, accuracy) in enumerate(
        [("completed", 0.8), ("rolled_back", 0.6), ("rolled_back", 0.6)], start=1
    ):
        metrics.on_round_end(
            ctx=_ctx(round_), summary=_summary(round_=round_, status=status, accuracy=accuracy)
        )
    samples = collect(metrics.registry)
    assert samples["fedpilot_global_metric_decline"][(("name", "accuracy"),)] == pytest.approx(0.25)
    assert samples["fedpilot_rollbacks_in_a_row"][()] == 2
    spent = PrivacyLoss(epsilon=1.5, delta=1e-5, rounds=3, noise_multiplier=1.0, clip_norm=1.0)
    metrics.on_privacy_spent(round=3, spent=spent)
    assert collect(metrics.registry)["fedpilot_privacy_epsilon"][()] == 1.5


def test_the_validators_reasons_fall_into_the_fixed_set() -> None:
    reference = [np.zeros((2, 3), np.float32)]
    validator = UpdateValidator(max_examples=100, required_metrics=("local_steps",))
    cases = {
        "num_examples": Reply("l", "train", reference, {"local_steps": 1.0}, num_examples=1000),
        "non_finite": Reply(
            "l", "train", [np.full((2, 3), np.nan, np.float32)], {"local_steps": 1.0}, 5
        ),
        "shape": Reply("l", "train", [np.zeros((3, 3), np.float32)], {"local_steps": 1.0}, 5),
        "missing_metric": Reply("l", "train", reference, {}, num_examples=5),
    }
    for expected, reply in cases.items():
        reason = validator.check(reply, reference).reason
        assert reason is not None and rejection_reason(reason) == expected, reason
    cohort = UpdateValidator(max_norm_ratio=2.0)
    outliers = cohort.cohort_outliers({"a": 1.0, "b": 1.1, "c": 50.0})
    assert rejection_reason(outliers["c"]) == "norm_outlier"
    assert rejection_reason("something new") == "other"


def test_a_port_in_use_names_the_field_and_leaves_no_run(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        spec = app_spec(tmp_path, runtime={"mode": "local", "metrics_port": port})
        with pytest.raises(SpecError) as info:
            run_federation(spec)
        assert info.value.field == "runtime.metrics_port"
        assert not list(spec.output_dir.glob("testapp-*"))
        path = tmp_path / "s.yaml"
        path.write_text(
            "name: s\ntask: {name: digits-mlp}\ndata: {num_learners: 2}\nrounds: 1\n"
            f"tracking: {{enabled: false}}\nruntime: {{mode: local, metrics_port: {port}}}\n"
            f"output_dir: {tmp_path / 'cli'}\n"
        )
        done = fedpilot("run", str(path), cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "runtime.metrics_port" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "cli").exists() or not list((tmp_path / "cli").iterdir())
