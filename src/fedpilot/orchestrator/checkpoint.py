"""Checkpoints: the global model and orchestrator state after every round.

Layout under ``<run_dir>/checkpoints/``: ``round-NNNNNN/`` folders holding
``weights.npz``, ``server_opt.npz``, ``components.npz`` and ``state.json``, plus a
``latest`` file naming the newest complete one. A folder is written under a temporary
name and renamed, and ``latest`` is replaced atomically, so a crash at any moment
leaves a loadable checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fedpilot.errors import ResumeError
from fedpilot.orchestrator.events import RoundRecord
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
    server_opt: dict[str, Any] = field(default_factory=dict)
    components: dict[str, Any] = field(default_factory=dict)
    """Other parts' ``state_dict()``s by name (selector, learner ledger, fleet): nested
    JSON-able data whose leaves may be numpy arrays."""


def save_checkpoint(run_dir: Path, state: RunState) -> Path:
    root = run_dir / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    name = f"round-{state.round:06d}"
    tmp = root / f".tmp-{name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    np.savez(tmp / "weights.npz", *state.weights)
    arrays = {k: v for k, v in state.server_opt.items() if isinstance(v, np.ndarray)}
    scalars = {k: v for k, v in state.server_opt.items() if not isinstance(v, np.ndarray)}
    np.savez(tmp / "server_opt.npz", **arrays)  # type: ignore[arg-type]
    component_arrays: dict[str, np.ndarray] = {}
    meta = {
        "round": state.round,
        "metrics": state.metrics,
        "rollbacks": state.rollbacks,
        # vars() rather than asdict(): the history grows every round and asdict deep-copies.
        "history": [dict(vars(r)) for r in state.history],
        "server_opt_scalars": scalars,
        "components": state.components,
        "num_arrays": len(state.weights),
    }
    # json calls the hook only for what it cannot write itself (numpy values), so the
    # plain data that makes up most components costs nothing extra.
    text = json.dumps(
        meta, separators=(",", ":"), default=lambda v: _stash_array(v, component_arrays)
    )
    np.savez(tmp / "components.npz", **component_arrays)  # type: ignore[arg-type]
    (tmp / "state.json").write_text(text)
    final = root / name
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    _write_atomic(root / "latest", name)
    for old in sorted(p for p in root.glob("round-*") if p.is_dir())[:-KEEP_LAST]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(run_dir: Path) -> RunState:
    root = run_dir / "checkpoints"
    latest = root / "latest"
    if not latest.is_file():
        raise ResumeError(f"no checkpoint to resume in {str(run_dir)!r} (missing {latest})")
    folder = root / latest.read_text().strip()
    try:
        meta = json.loads((folder / "state.json").read_text())
        with np.load(folder / "weights.npz") as npz:
            weights = [npz[f"arr_{i}"] for i in range(int(meta["num_arrays"]))]
        with np.load(folder / "server_opt.npz") as npz:
            server_opt: dict[str, Any] = {k: npz[k] for k in npz.files}
        with np.load(folder / "components.npz") as npz:
            components = _join_arrays(meta.get("components", {}), {k: npz[k] for k in npz.files})
    except (OSError, KeyError, ValueError) as exc:
        raise ResumeError(f"checkpoint {str(folder)!r} is unreadable: {exc}") from exc
    server_opt.update(meta["server_opt_scalars"])
    return RunState(
        round=int(meta["round"]),
        weights=weights,
        metrics={k: float(v) for k, v in meta["metrics"].items()},
        rollbacks=int(meta["rollbacks"]),
        history=[RoundRecord(**r) for r in meta["history"]],
        server_opt=server_opt,
        components=components,
    )


_ARRAY = "__array__"


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


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)
