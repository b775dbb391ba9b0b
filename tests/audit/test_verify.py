"""`fedpilot audit verify` on a real run's audit log: untouched, then tampered with in
each way the log must catch, and torn by a killed writer (which is not tampering)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from clitools import fedpilot
from conftest import app_spec
from fedpilot.audit.chain import GENESIS, line_hash, signed_message
from fedpilot.audit.keys import KEY_ENV, key_id, public_hex, write_public_key
from fedpilot.launch import run_federation


@pytest.fixture(scope="module")
def audited(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 3-round run: one learner sends NaNs (rejected), one raises (failed)."""
    root = tmp_path_factory.mktemp("audited")
    spec = app_spec(root, task__run_config={"nan-partition": 1, "raise-partition": 2}, rounds=3)
    result = run_federation(spec)
    assert result.status == "completed", result.error
    (run_dir,) = [p for p in (root / "runs").iterdir() if p.is_dir()]
    return run_dir


@pytest.fixture
def run_copy(audited: Path, tmp_path: Path) -> Path:
    """The run, copied (a test may tamper)."""
    return Path(shutil.copytree(audited, tmp_path / "runs" / audited.name))


def _signing_key() -> Path:
    return Path(os.environ[KEY_ENV])  # the tests' own (tests/conftest.py)


def _lines(run_dir: Path) -> list[bytes]:
    return (run_dir / "audit.jsonl").read_bytes().splitlines()


def _write(run_dir: Path, lines: list[bytes]) -> None:
    (run_dir / "audit.jsonl").write_bytes(b"".join(line + b"\n" for line in lines))


def _verify(run_dir: Path, *args: str) -> tuple[int, str]:
    done = fedpilot("audit", "verify", str(run_dir), *args, cwd=run_dir.parent)
    return done.returncode, done.stdout + done.stderr


def _index(lines: list[bytes], kind: str, **match: Any) -> int:
    """0-based index of the first line of ``kind`` whose fields include ``match``."""
    for i, line in enumerate(lines):
        record = json.loads(line)
        if record["kind"] == kind and all(record.get(k) == v for k, v in match.items()):
            return i
    raise AssertionError(f"no {kind} line with {match}")


def test_untouched_run_verifies_and_records_every_outcome(run_copy: Path) -> None:
    code, out = _verify(run_copy)
    assert code == 0, out
    assert "intact" in out and "signed through line" in out
    records = [json.loads(line) for line in _lines(run_copy)]
    assert records[0]["kind"] == "log_started"
    assert records[-1]["kind"] == "signature"
    updates = [r for r in records if r["kind"] == "update"]
    by_outcome = {(r["learner"], r["outcome"]) for r in updates}
    assert ("1", "rejected") in by_outcome and ("2", "failed") in by_outcome
    assert ("0", "accepted") in by_outcome
    assert len(updates) == 3 * 5
    for r in updates:
        assert r["reason"] is None if r["outcome"] == "accepted" else r["reason"]
        if r["outcome"] == "failed":
            assert r["digest"] is None
        else:
            assert len(r["digest"]) == 64  # SHA-256 hex of the arrays as received
    # The event log carries the same digests, so either log can be checked against the other.
    events = [json.loads(x) for x in (run_copy / "events.jsonl").read_text().splitlines()]
    logged = {(e["round"], e["learner"]): e["digest"] for e in events if "digest" in e}
    assert logged == {(r["round"], r["learner"]): r["digest"] for r in updates}
    # One signature after each round's end, and after the start and the end of the run.
    ends = [i for i, r in enumerate(records) if r["kind"] in ("round_ended", "run_finished")]
    assert all(records[i + 1]["kind"] == "signature" for i in ends)
    assert (run_copy / "audit.pub").is_file()
    assert _signing_key().stat().st_mode & 0o777 == 0o600


def test_edited_line_is_named(run_copy: Path) -> None:
    lines = _lines(run_copy)
    i = _index(lines, "update", outcome="rejected")
    lines[i] = lines[i].replace(b'"rejected"', b'"accepted"')
    _write(run_copy, lines)
    code, out = _verify(run_copy)
    assert code == 1, out
    assert f"line {i + 1}:" in out and "edited" in out and "TAMPERED" in out


def test_deleted_line_is_named(run_copy: Path) -> None:
    lines = _lines(run_copy)
    i = _index(lines, "update", outcome="failed")
    del lines[i]
    _write(run_copy, lines)
    code, out = _verify(run_copy)
    assert code == 1, out
    assert f"line {i + 1}:" in out and "deleted" in out


def test_reordered_pair_is_named(run_copy: Path) -> None:
    lines = _lines(run_copy)
    i = _index(lines, "update", round=2)
    lines[i], lines[i + 1] = lines[i + 1], lines[i]
    _write(run_copy, lines)
    code, out = _verify(run_copy)
    assert code == 1, out
    assert f"line {i + 1}:" in out and "reordered" in out


def _rewrite(lines: list[bytes], edit: int, key: Ed25519PrivateKey | None = None) -> list[bytes]:
    """The chain with line ``edit`` changed and every prev recomputed, as a tamperer who
    knows the format would; signatures re-made with ``key`` if given, else kept."""
    out: list[bytes] = []
    prev = GENESIS
    for i, line in enumerate(lines):
        record = json.loads(line)
        record["prev"] = prev
        if i == edit:
            record["reason"] = None
            record["outcome"] = "accepted"
        if key is not None and record["kind"] == "log_started":
            record["public_key"] = public_hex(key.public_key())
            record["key_id"] = key_id(record["public_key"])
        if key is not None and record["kind"] == "signature":
            record["signature"] = key.sign(signed_message(prev)).hex()
        new = orjson.dumps(record)
        out.append(new)
        prev = line_hash(new)
    return out


def test_rewritten_chain_fails_its_signatures(run_copy: Path) -> None:
    lines = _lines(run_copy)
    i = _index(lines, "update", outcome="rejected")
    _write(run_copy, _rewrite(lines, i))
    code, out = _verify(run_copy)
    assert code == 1, out
    # The first signature after the edit is the first line that no longer holds.
    first_signature = next(j for j in range(i, len(lines)) if b'"signature"' in lines[j])
    assert f"line {first_signature + 1}:" in out and "signature does not verify" in out


def test_rewritten_chain_resigned_with_another_key_is_caught(
    run_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = _lines(run_copy)
    i = _index(lines, "update", outcome="rejected")
    forger = Ed25519PrivateKey.generate()
    _write(run_copy, _rewrite(lines, i, key=forger))
    write_public_key(run_copy / "audit.pub", forger.public_key())
    # Where the signing key is (the operator's machine): line 1 names the wrong key.
    code, out = _verify(run_copy)
    assert code == 1, out
    assert "line 1:" in out and "re-signed with another key" in out
    # An auditor elsewhere, with a copy of the run's original public key, sees the same.
    pinned = run_copy.parent.parent / "original.pub"
    original = serialization.load_pem_private_key(_signing_key().read_bytes(), password=None)
    assert isinstance(original, Ed25519PrivateKey)
    write_public_key(pinned, original.public_key())
    monkeypatch.setenv(KEY_ENV, str(run_copy.parent / "no-key-on-this-machine.pem"))
    code, out = _verify(run_copy, "--public-key", str(pinned))
    assert code == 1 and "line 1:" in out, out
    # Without any trusted key, the forgery passes, and verify says why it cannot tell.
    code, out = _verify(run_copy)
    assert code == 0, out
    assert "would pass" in out


def test_torn_tail_is_reported_as_such_and_the_next_writer_continues(run_copy: Path) -> None:
    from fedpilot.audit import append

    log = run_copy / "audit.jsonl"
    whole = log.read_bytes()
    torn = b'{"seq":999,"time":"2026-12-03T08:00:00.000+00:00","kind":"upd'
    log.write_bytes(whole + torn)
    code, out = _verify(run_copy)
    assert code == 0, out
    assert f"torn last line ({len(torn)} bytes" in out and "not tampering" in out
    append(run_copy, "model_registered", {"name": "digits", "version": 1})
    code, out = _verify(run_copy)
    assert code == 0, out
    assert "torn last line" not in out
    records = [json.loads(line) for line in _lines(run_copy)]
    assert [r["kind"] for r in records[-3:]] == [
        "torn_tail_discarded",
        "model_registered",
        "signature",
    ]
    assert records[-3]["bytes"] == len(torn)
    assert log.read_bytes().startswith(whole)


def test_a_chain_rewritten_without_its_signatures_is_caught(run_copy: Path) -> None:
    # The tamperer keeps line 1 (it names the trusted key), edits an update, drops every
    # signature and renumbers and rechains the rest: no signature is left to fail. Every
    # writer signs its first lines at once, so a log with no signature is no log of theirs.
    lines = [line for line in _lines(run_copy)[1:] if json.loads(line)["kind"] != "signature"]
    out, prev = [_lines(run_copy)[0]], line_hash(_lines(run_copy)[0])
    for seq, line in enumerate(lines, start=2):
        record = json.loads(line)
        record.update(seq=seq, prev=prev)
        if record["kind"] == "update" and record["outcome"] == "rejected":
            record.update(outcome="accepted", reason=None)
        out.append(orjson.dumps(record))
        prev = line_hash(out[-1])
    _write(run_copy, out)
    code, text = _verify(run_copy)
    assert code == 1, text
    assert f"line {len(out)}:" in text and "no line is signed" in text


def test_a_log_copied_from_another_run_is_caught(run_copy: Path) -> None:
    # Every run on a machine is signed with the same key: another run's untouched log,
    # put in place of this run's, carries valid signatures, but its first line names the
    # run it belongs to.
    other = run_copy.parent / "testapp-another-run"
    shutil.copytree(run_copy, other)
    code, out = _verify(other)
    assert code == 1, out
    assert "line 1:" in out and run_copy.name in out and "another run" in out
    code, out = _verify(run_copy)  # in its own run's directory it holds
    assert code == 0, out
    done = fedpilot("audit", "verify", ".", cwd=run_copy)  # named from inside it, too
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_log_with_no_whole_line_fails(run_copy: Path) -> None:
    # A torn last line is no tampering, but a log that is nothing but one proves nothing.
    (run_copy / "audit.jsonl").write_bytes(b'{"seq":1,"time":"2026-12-03T08:00:00.000+00')
    code, out = _verify(run_copy)
    assert code == 1, out
    assert "line 1:" in out and "no whole line" in out


def test_no_audit_log_fails(run_copy: Path) -> None:
    (run_copy / "audit.jsonl").unlink()
    code, out = _verify(run_copy)
    assert code == 1 and "missing" in out, out


def test_bad_public_key_file_exits_2(run_copy: Path) -> None:
    bogus = run_copy.parent / "bogus.pub"
    bogus.write_text("not a key")
    code, out = _verify(run_copy, "--public-key", str(bogus))
    assert code == 2, out
    assert "not a PEM public key" in out and "Traceback" not in out
