"""What a run's audit log records across a resume, a privacy budget stop and outside
callers (the model registry), and the update digest it records."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tests.federations import StopAfter, digits_spec

from fedpilot.audit import append, verify_log
from fedpilot.errors import UserError
from fedpilot.launch import run_federation
from fedpilot.orchestrator.intake import update_digest
from fedpilot.privacy import PrivacyAccountant
from fedpilot.types import Reply


def _records(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "audit.jsonl").read_text().splitlines()]


def _run_dir(root: Path) -> Path:
    (run_dir,) = [p.parent for p in root.rglob("audit.jsonl")]
    return run_dir


def test_a_resumed_run_continues_the_chain_past_a_torn_line(tmp_path: Path) -> None:
    spec = digits_spec(tmp_path, "resumed", rounds=3)
    assert run_federation(spec, callbacks=[StopAfter(1)]).status == "interrupted"
    run_dir = _run_dir(tmp_path)
    assert verify_log(run_dir).ok
    # A writer killed mid-line (the kernel wrote part of its last write).
    with (run_dir / "audit.jsonl").open("ab") as log:
        log.write(b'{"seq":12,"time":"2026-12-03T08:00:00.000+00:00","kind":"up')
    torn = verify_log(run_dir)
    assert torn.ok and torn.torn_tail > 0
    assert run_federation(spec, resume_dir=run_dir).status == "completed"
    result = verify_log(run_dir)
    assert result.ok, result.problem
    assert result.torn_tail == 0 and result.unsigned == 0
    kinds = [r["kind"] for r in _records(run_dir)]
    assert kinds.count("log_started") == 1
    assert kinds.count("writer_started") == 2
    assert kinds.count("torn_tail_discarded") == 1
    finished = [r["status"] for r in _records(run_dir) if r["kind"] == "run_finished"]
    assert finished == ["interrupted", "completed"]
    ended = [r["round"] for r in _records(run_dir) if r["kind"] == "round_ended"]
    assert ended == [1, 2, 3]


def test_a_privacy_budget_stop_is_audited_and_so_is_the_resume_it_stops(tmp_path: Path) -> None:
    accountant = PrivacyAccountant(
        noise_multiplier=1.0, population=6, cohort=3, sampling="fixed_size", delta=1e-5
    )
    target = (accountant.epsilon(2) + accountant.epsilon(3)) / 2
    spec = digits_spec(
        tmp_path,
        "budget",
        weighting={"scheme": "uniform"},
        data={"partition": "iid"},
        privacy={
            "mode": "central",
            "clip_norm": 2.0,
            "noise_multiplier": 1.0,
            "target_epsilon": target,
        },
        rounds=6,
    )
    assert run_federation(spec).status == "stopped"
    run_dir = _run_dir(tmp_path)
    assert run_federation(spec, resume_dir=run_dir).status == "stopped"
    stops = [r for r in _records(run_dir) if r["kind"] == "privacy_budget_stop"]
    assert [s["round"] for s in stops] == [2, 3]  # after round 2; before round 3, resumed
    assert all("privacy.target_epsilon" in s["reason"] for s in stops)
    assert verify_log(run_dir).ok


def test_append_records_a_registry_action_signed_at_once(tmp_path: Path) -> None:
    run_dir = tmp_path / "runs" / "a-run"
    run_dir.mkdir(parents=True)
    append(run_dir, "model_promoted", {"model": "digits", "version": 3, "stage": "production"})
    append(run_dir, "gate_decision", {"model": "digits", "passed": False, "why": "accuracy"})
    records = _records(run_dir)
    assert [r["kind"] for r in records] == [
        "log_started",
        "model_promoted",
        "signature",
        "gate_decision",
        "signature",
    ]
    assert records[1]["version"] == 3
    assert verify_log(run_dir).ok


@pytest.mark.parametrize(
    ("kind", "fields", "message"),
    [
        ("signature", {}, "kind must be"),
        ("Model Promoted", {}, "kind must be"),
        ("model_promoted", {"prev": "x"}, "may not be named prev"),
        ("model_promoted", {"when": object()}, "not JSON-able"),
    ],
)
def test_append_refuses_what_would_break_the_log(
    tmp_path: Path, kind: str, fields: dict[str, Any], message: str
) -> None:
    with pytest.raises(UserError, match=message):
        append(tmp_path, kind, fields)
    assert not (tmp_path / "audit.jsonl").exists()
    with pytest.raises(UserError, match="does not exist"):
        append(tmp_path / "missing", "model_promoted", {})


def test_update_digest_covers_bytes_shape_dtype_and_extras() -> None:
    w = [np.arange(6, dtype=np.float32).reshape(2, 3), np.ones(3, np.float32)]
    base = update_digest(Reply("a", "train", weights=w))
    assert base == update_digest(Reply("b", "train", weights=[x.copy() for x in w]))
    assert len(base) == 64
    changed = [w[0].copy(), w[1]]
    changed[0][1, 2] += 1e-3
    reshaped = [w[0].reshape(3, 2), w[1]]
    retyped = [w[0].astype(np.float64), w[1]]
    extra = Reply("a", "train", weights=w, extras={"scaffold": [np.zeros(2)]})
    others = {
        update_digest(Reply("a", "train", weights=changed)),
        update_digest(Reply("a", "train", weights=reshaped)),
        update_digest(Reply("a", "train", weights=retyped)),
        update_digest(extra),
        # Fortran order holds the same values: the digest is of the values, in C order.
    }
    assert base not in others and len(others) == 4
    assert update_digest(Reply("a", "train", weights=[np.asfortranarray(w[0]), w[1]])) == base


def test_learners_joining_leaving_and_refused_are_recorded(tmp_path: Path) -> None:
    from conftest import app_spec
    from fedpilot.audit import AuditLogCallback
    from fedpilot.orchestrator.events import RunInfo, RunResult
    from fedpilot.types import FleetNotice

    run_dir = tmp_path / "runs" / "fleet"
    run_dir.mkdir(parents=True)
    run = RunInfo(run_id="fleet", run_dir=run_dir, spec=app_spec(tmp_path))
    audit = AuditLogCallback()
    audit.on_run_start(run=run)
    audit.on_fleet_notice(round=1, notice=FleetNotice("joined", "hospital-a"))
    audit.on_fleet_notice(round=2, notice=FleetNotice("refused", "SHA256:abc", "key not allowed"))
    audit.on_fleet_notice(round=3, notice=FleetNotice("left", "hospital-a"))
    audit.on_run_end(
        run=run,
        result=RunResult("completed", 3, {}, 0, [], ()),
    )
    assert audit.failure is None
    notices = [r for r in _records(run_dir) if r["kind"].startswith("learner_")]
    assert [(r["kind"], r["round"], r["learner"]) for r in notices] == [
        ("learner_joined", 1, "hospital-a"),
        ("learner_refused", 2, "SHA256:abc"),
        ("learner_left", 3, "hospital-a"),
    ]
    assert notices[1]["detail"] == "key not allowed"
    assert verify_log(run_dir).ok and verify_log(run_dir).unsigned == 0


def test_an_unusable_signing_key_is_reported_not_fatal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("not a key")
    bad.chmod(0o600)  # private, but no key
    monkeypatch.setenv("FEDPILOT_AUDIT_KEY", str(bad))
    spec = digits_spec(tmp_path, "badkey", rounds=1)
    result = run_federation(spec)
    assert result.status == "completed"
    assert result.tracking_error is not None and "audit log" in result.tracking_error
    assert "not an unencrypted PEM private key" in result.tracking_error


def test_a_signing_key_others_can_read_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Whoever can read the key can re-sign any log: like ssh, refuse one that is not private.
    key = tmp_path / "keys" / "audit-key.pem"
    monkeypatch.setenv("FEDPILOT_AUDIT_KEY", str(key))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    append(run_dir, "model_registered", {"name": "digits"})  # makes the key, 0600
    assert key.stat().st_mode & 0o777 == 0o600
    key.chmod(0o644)
    with pytest.raises(UserError, match=r"open to others .*0644.*chmod 600"):
        append(run_dir, "model_promoted", {"name": "digits"})
    key.chmod(0o600)
    append(run_dir, "model_promoted", {"name": "digits"})
    assert verify_log(run_dir).ok
