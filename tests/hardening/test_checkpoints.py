"""Damaged checkpoints: a resume takes the newest intact one, says so, and never shows a
traceback; with none intact it refuses (exit 2) and leaves every file as it was."""

from __future__ import annotations

import json
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from clitools import EXAMPLES, SMALL_DIGITS, fedpilot
from fedpilot.errors import ResumeError
from fedpilot.orchestrator.checkpoint import (
    RunState,
    load_checkpoint,
    restore_checkpoint,
    save_checkpoint,
)


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _flip_a_weight_byte(path: Path) -> None:
    # A byte inside the first weight array: the zip's structure stays valid, so only a
    # checksum can tell (this one raised a CRC traceback before).
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("w/0.npy")
    data[info.header_offset + 200] ^= 0x01
    path.write_bytes(bytes(data))


DAMAGE: dict[str, Callable[[Path], None]] = {
    "truncated": _truncate,  # was: zipfile.BadZipFile traceback
    "empty": _empty,  # was: "fedpilot: aborted", exit 130
    "flipped": _flip_a_weight_byte,  # was: a CRC traceback
}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4-round run (its checkpoints: rounds 2, 3 and 4)."""
    root = tmp_path_factory.mktemp("finished")
    args = ["run", str(EXAMPLES / "digits.yaml"), *SMALL_DIGITS, "--json"]
    done = fedpilot(*args, "--output-dir", str(root / "runs"), cwd=root)
    assert done.returncode == 0, done.stderr
    return Path(root / json.loads(done.stdout)["run_dir"])


def _copy(run: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "runs" / run.name
    shutil.copytree(run, copy)
    return copy


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_resume_skips_a_damaged_newest_checkpoint_and_says_so(
    finished_run: Path, tmp_path: Path, damage: str
) -> None:
    run_dir = _copy(finished_run, tmp_path)
    newest = run_dir / "checkpoints" / "round-000004.npz"
    reference = load_checkpoint(run_dir)
    DAMAGE[damage](newest)

    resumed = fedpilot("run", "--resume", str(run_dir), cwd=tmp_path)

    assert resumed.returncode == 0, resumed.stderr
    assert "Traceback" not in resumed.stderr
    assert "round-000004.npz skipped" in resumed.stderr
    assert "resumed from round-000003.npz" in resumed.stderr
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    warnings = [e for e in events if e["event"] == "Warning" and e["code"] == "checkpoint"]
    assert len(warnings) == 1 and "round-000004.npz" in warnings[0]["message"]
    assert [e["start_round"] for e in events if e["event"] == "RunStarted"] == [1, 4]
    # Round 4 ran again from round 3's checkpoint: exactly the model it had made before.
    redone = load_checkpoint(run_dir)
    assert redone.round == 4
    for got, want in zip(redone.weights, reference.weights, strict=True):
        np.testing.assert_array_equal(got, want)


def test_no_intact_checkpoint_exits_2_and_changes_nothing(
    finished_run: Path, tmp_path: Path
) -> None:
    run_dir = _copy(finished_run, tmp_path)
    for path, damage in zip(
        sorted((run_dir / "checkpoints").iterdir()), DAMAGE.values(), strict=True
    ):
        damage(path)
    before = {p.relative_to(run_dir): p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}

    resumed = fedpilot("run", "--resume", str(run_dir), cwd=tmp_path)

    assert resumed.returncode == 2, resumed.stderr
    assert "Traceback" not in resumed.stderr
    assert "no intact checkpoint to resume" in resumed.stderr
    for name in ("round-000002.npz", "round-000003.npz", "round-000004.npz"):
        assert name in resumed.stderr
    after = {p.relative_to(run_dir): p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    after.pop(Path("run.lock"))  # the refusal held the lock to read the checkpoints
    before.pop(Path("run.lock"), None)
    assert after == before


def _state(round_: int) -> RunState:
    rng = np.random.default_rng(round_)
    return RunState(
        round=round_,
        weights=[rng.normal(size=(16, 8)).astype(np.float32), rng.normal(size=8)],
        metrics={"accuracy": 0.5 + round_ / 100},
    )


def test_every_single_byte_flip_or_truncation_of_a_checkpoint_is_detected(
    tmp_path: Path,
) -> None:
    save_checkpoint(tmp_path, _state(1))
    newest = save_checkpoint(tmp_path, _state(2))
    pristine = newest.read_bytes()
    rng = np.random.default_rng(13)
    flips = rng.choice(len(pristine), size=300, replace=False)
    cuts = rng.choice(len(pristine), size=100, replace=False)
    damaged = [
        pristine[:i] + bytes([pristine[i] ^ (1 << int(rng.integers(8)))]) + pristine[i + 1 :]
        for i in flips
    ] + [pristine[:i] for i in cuts]
    for data in damaged:
        newest.write_bytes(data)
        restored = restore_checkpoint(tmp_path)
        assert restored.path.name == "round-000001.npz", f"damage not detected: {len(data)} bytes"
        assert [path.name for path, _ in restored.skipped] == ["round-000002.npz"]
    newest.write_bytes(pristine)
    assert restore_checkpoint(tmp_path).state.round == 2


def test_a_sealed_checkpoint_is_still_a_plain_npz_and_unsealed_ones_still_load(
    tmp_path: Path,
) -> None:
    path = save_checkpoint(tmp_path, _state(1))
    with np.load(path) as npz:  # numpy and any zip tool read it as before
        np.testing.assert_array_equal(npz["w/0"], _state(1).weights[0])
    with zipfile.ZipFile(path) as archive:
        assert archive.comment.startswith(b"fedpilot-sha256:")
        assert archive.testzip() is None
    # A checkpoint written before checkpoints were sealed: the same archive, no comment.
    legacy = tmp_path / "checkpoints" / "round-000002.npz"
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(legacy, "w") as target:
        for info in source.infolist():
            target.writestr(info, source.read(info))
    assert restore_checkpoint(tmp_path).path == legacy


def test_no_checkpoint_at_all_is_a_resume_error(tmp_path: Path) -> None:
    with pytest.raises(ResumeError, match="no checkpoint to resume"):
        restore_checkpoint(tmp_path)
