"""Checkpoints: the global model and orchestrator state after every round.

Layout: ``<run_dir>/checkpoints/round-NNNNNN.npz``, one file per round holding the
global weights (``w/<i>``), the arrays inside the stateful parts' state (``c/<key>``;
see :mod:`.state`) and everything else as JSON (``state``). One file rather than a folder
of them: a checkpoint is taken every round, and with a small model the file-system
operations cost more than the bytes.

A file is sealed with a SHA-256 digest of itself (the zip archive's comment, so numpy
and any zip tool still read it), written under a temporary name, fsync'd, and only then
renamed into place (and the folder fsync'd): a crash or a power cut at any moment leaves
the previous checkpoints as they were. A resume takes the newest checkpoint whose digest
holds and says which ones it skipped and why (a truncated, emptied or flipped file);
it never changes or removes one. Files written before checkpoints were sealed (no
comment) are still read, checked by the zip's own CRCs.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fedpilot.errors import ResumeError
from fedpilot.orchestrator.events import RoundRecord
from fedpilot.rundir import RunDir
from fedpilot.types import Metrics, Weights

KEEP_LAST = 3


@dataclass
class RunState:
    """Everything a resumed run needs to continue exactly where this one stopped."""

    round: int
    """Last completed round (0 before the first)."""
    weights: Weights
    metrics: Metrics
    """Evaluation of ``weights`` (the last accepted global model)."""
    rollbacks: int = 0
    history: list[RoundRecord] = field(default_factory=list)
    components: dict[str, Any] = field(default_factory=dict)
    """Every stateful part's ``state_dict()`` by its registered name (server optimizer,
    selector, ledger, fleet, learners' states, transforms): nested JSON-able data whose
    leaves may be numpy arrays."""


def save_checkpoint(run_dir: Path, state: RunState) -> Path:
    root = RunDir(run_dir).checkpoints
    arrays: dict[str, np.ndarray] = {f"w/{i}": w for i, w in enumerate(state.weights)}
    meta = {
        "round": state.round,
        "metrics": state.metrics,
        "rollbacks": state.rollbacks,
        # vars() rather than asdict(): the history grows every round and asdict deep-copies.
        "history": [dict(vars(r)) for r in state.history],
        "components": state.components,
        "num_arrays": len(state.weights),
    }
    text, component_arrays = encode_state(meta)
    arrays.update({f"c/{key}": value for key, value in component_arrays.items()})
    arrays["state"] = np.frombuffer(text.encode(), dtype=np.uint8)
    final = root / f"round-{state.round:06d}.npz"
    tmp = root / f".tmp-{final.name}-{os.getpid()}"
    # Built in memory and written in one call: zipfile seeks back to patch each member's
    # header, which on a real file costs a flush per member.
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # type: ignore[arg-type]
    data = _sealed(buffer.getbuffer())
    try:
        _write_synced(tmp, data)
    except FileNotFoundError:  # the run's first checkpoint: the folder is made then
        root.mkdir(parents=True, exist_ok=True)
        _fsync_dir(root.parent)
        _write_synced(tmp, data)
    os.replace(tmp, final)
    _fsync_dir(root)  # the rename itself survives a power cut
    for old in _checkpoints(root)[:-KEEP_LAST]:
        old.unlink(missing_ok=True)
    return final


def _write_synced(path: Path, chunks: list[bytes | memoryview]) -> None:
    with path.open("wb") as handle:
        for chunk in chunks:
            handle.write(chunk)
        handle.flush()
        os.fsync(handle.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# A zip archive ends with its end-of-central-directory record, whose last field is the
# length of the archive's comment, then the comment. The seal is that comment.
_END_RECORD = b"PK\x05\x06"
_END_RECORD_SIZE = 22
_SEAL_PREFIX = b"fedpilot-sha256:"
_SEAL_SIZE = len(_SEAL_PREFIX) + 64


def _sealed(archive: memoryview) -> list[bytes | memoryview]:
    """``archive`` (a zip without a comment) with the SHA-256 of everything before the
    comment as its comment, in pieces to write one after the other (no copy of the
    model)."""
    assert bytes(archive[-_END_RECORD_SIZE:][:4]) == _END_RECORD
    assert bytes(archive[-2:]) == b"\0\0"
    comment_length = _SEAL_SIZE.to_bytes(2, "little")
    digest = hashlib.sha256(archive[:-2])
    digest.update(comment_length)
    return [archive[:-2], comment_length, _SEAL_PREFIX + digest.hexdigest().encode()]


def _seal_problem(data: bytes) -> str | None:
    """Why ``data`` is not an intact checkpoint file, or None (sealed and intact, or
    written before checkpoints were sealed: the zip's CRCs check it as it is read)."""
    if not data:
        return "the file is empty"
    legacy = data[-_END_RECORD_SIZE:][:4] == _END_RECORD and data[-2:] == b"\0\0"
    if legacy:
        return None
    seal = data[-_SEAL_SIZE:]
    if not seal.startswith(_SEAL_PREFIX):
        return f"no digest at its end (truncated? {len(data)} bytes)"
    if hashlib.sha256(data[:-_SEAL_SIZE]).hexdigest().encode() != seal[len(_SEAL_PREFIX) :]:
        return "its SHA-256 digest does not match its content (damaged)"
    return None


@dataclass(frozen=True)
class Restored:
    """The checkpoint a run resumes from, and the newer ones that were not usable."""

    state: RunState
    path: Path
    skipped: tuple[tuple[Path, str], ...] = ()
    """Each newer checkpoint that is damaged, with why; newest first."""


def restore_checkpoint(run_dir: Path) -> Restored:
    """The newest intact checkpoint of ``run_dir`` (nothing is changed or removed).

    Raises:
        ResumeError: No checkpoint, or none intact (the message says what is wrong with
            each).
    """
    found = _checkpoints(RunDir(run_dir).checkpoints)
    if not found:
        raise ResumeError(
            f"no checkpoint to resume in {str(run_dir)!r} (no checkpoints/round-*.npz)"
        )
    skipped: list[tuple[Path, str]] = []
    for path in reversed(found):
        try:
            return Restored(_read_checkpoint(path), path, tuple(skipped))
        except _Damaged as exc:
            skipped.append((path, str(exc)))
    problems = "; ".join(f"{path.name}: {why}" for path, why in skipped)
    raise ResumeError(
        f"no intact checkpoint to resume in {str(run_dir)!r} ({problems}); "
        "the files are left as they are"
    )


def load_checkpoint(run_dir: Path) -> RunState:
    """The run's state at its newest intact checkpoint (see :func:`restore_checkpoint`)."""
    return restore_checkpoint(run_dir).state


class _Damaged(Exception):
    """A checkpoint file that cannot be used; the message says why."""


def _read_checkpoint(path: Path) -> RunState:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise _Damaged(f"unreadable: {exc}") from exc
    problem = _seal_problem(data)
    if problem is not None:
        raise _Damaged(problem)
    try:
        with np.load(io.BytesIO(data)) as npz:
            stashed = {k.removeprefix("c/"): npz[k] for k in npz.files if k.startswith("c/")}
            meta = decode_state(npz["state"].tobytes(), stashed)
            weights = [npz[f"w/{i}"] for i in range(int(meta["num_arrays"]))]
            components: dict[str, Any] = meta.get("components", {})
            if "server_opt_scalars" in meta:  # written before the server optimizer was a part
                legacy = {k[4:]: npz[k] for k in npz.files if k.startswith("opt/")}
                components["server_opt"] = {**legacy, **meta["server_opt_scalars"]}
        return RunState(
            round=int(meta["round"]),
            weights=weights,
            metrics={k: float(v) for k, v in meta["metrics"].items()},
            rollbacks=int(meta["rollbacks"]),
            history=[RoundRecord(**r) for r in meta["history"]],
            components=components,
        )
    # A damaged unsealed file can fail in any of zipfile's, zlib's, numpy's or json's ways
    # (BadZipFile, a CRC error, EOFError, ...); the digest rules that out for sealed ones.
    except Exception as exc:
        raise _Damaged(f"unreadable ({type(exc).__name__}: {exc})") from exc


def _checkpoints(root: Path) -> list[Path]:
    """The complete checkpoints in ``root``, oldest first (round numbers are padded)."""
    try:
        names = os.listdir(root)
    except FileNotFoundError:
        return []
    # A plain listing: this runs every round, and pathlib's glob machinery cost more.
    return [
        root / name for name in sorted(names) if name.startswith("round-") and name.endswith(".npz")
    ]


_ARRAY = "__array__"


def encode_state(value: Any) -> tuple[str, dict[str, np.ndarray]]:
    """``value`` (JSON-able data whose leaves may be numpy arrays) as JSON text, with
    each array replaced by a reference into the returned mapping (stored as binary).

    Raises:
        TypeError: A leaf is neither JSON-able nor a numpy value.
    """
    arrays: dict[str, np.ndarray] = {}
    # json calls the hook only for what it cannot write itself (numpy values), so plain
    # data costs nothing extra.
    text = json.dumps(value, separators=(",", ":"), default=lambda v: _stash_array(v, arrays))
    return text, arrays


def decode_state(text: str | bytes, arrays: dict[str, np.ndarray]) -> Any:
    """Inverse of :func:`encode_state`."""
    return _join_arrays(json.loads(text), arrays)


def _stash_array(value: Any, arrays: dict[str, np.ndarray]) -> Any:
    """A JSON stand-in for a numpy value: a reference into ``arrays`` for an array."""
    if isinstance(value, np.ndarray):
        key = f"a{len(arrays)}"
        arrays[key] = value
        return {_ARRAY: key}
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot checkpoint a {type(value).__name__}")


def _join_arrays(value: Any, arrays: dict[str, np.ndarray]) -> Any:
    if isinstance(value, dict):
        if set(value) == {_ARRAY}:
            return arrays[value[_ARRAY]]
        return {k: _join_arrays(v, arrays) for k, v in value.items()}
    if isinstance(value, list):
        return [_join_arrays(v, arrays) for v in value]
    return value
