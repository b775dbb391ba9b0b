"""Checkpoints: the global model and orchestrator state after every round.

Layout: ``<run_dir>/checkpoints/round-NNNNNN.npz``, one file per round holding the
global weights (``w/<i>``), the arrays inside the stateful parts' state (``c/<key>``;
see :mod:`.state`) and everything else as JSON (``state``). A file
is written under a temporary name and renamed, so every ``round-*.npz`` is complete and
the newest one is the checkpoint to resume; a crash at any moment leaves one. One file
rather than a folder of them: a checkpoint is taken every round, and with a small model
the file-system operations cost more than the bytes.
"""

from __future__ import annotations

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
    try:
        tmp.write_bytes(buffer.getbuffer())
    except FileNotFoundError:  # the run's first checkpoint: the folder is made then
        root.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(buffer.getbuffer())
    os.replace(tmp, final)
    for old in _checkpoints(root)[:-KEEP_LAST]:
        old.unlink(missing_ok=True)
    return final


def load_checkpoint(run_dir: Path) -> RunState:
    found = _checkpoints(RunDir(run_dir).checkpoints)
    if not found:
        raise ResumeError(
            f"no checkpoint to resume in {str(run_dir)!r} (no checkpoints/round-*.npz)"
        )
    path = found[-1]
    try:
        with np.load(path) as npz:
            stashed = {k.removeprefix("c/"): npz[k] for k in npz.files if k.startswith("c/")}
            meta = decode_state(npz["state"].tobytes(), stashed)
            weights = [npz[f"w/{i}"] for i in range(int(meta["num_arrays"]))]
            components: dict[str, Any] = meta.get("components", {})
            if "server_opt_scalars" in meta:  # written before the server optimizer was a part
                legacy = {k[4:]: npz[k] for k in npz.files if k.startswith("opt/")}
                components["server_opt"] = {**legacy, **meta["server_opt_scalars"]}
    except (OSError, KeyError, ValueError) as exc:
        raise ResumeError(f"checkpoint {str(path)!r} is unreadable: {exc}") from exc
    return RunState(
        round=int(meta["round"]),
        weights=weights,
        metrics={k: float(v) for k, v in meta["metrics"].items()},
        rollbacks=int(meta["rollbacks"]),
        history=[RoundRecord(**r) for r in meta["history"]],
        components=components,
    )


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
