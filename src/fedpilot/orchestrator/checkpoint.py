"""Checkpoints: the global model and orchestrator state after every round.

Layout under ``<run_dir>/checkpoints/``: ``round-NNNNNN/`` folders holding
``weights.npz``, ``server_opt.npz`` and ``state.json``, plus a ``latest`` file naming
the newest complete one. A folder is written under a temporary name and renamed, and
``latest`` is replaced atomically, so a crash at any moment leaves a loadable checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, field
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
    meta = {
        "round": state.round,
        "metrics": state.metrics,
        "rollbacks": state.rollbacks,
        "history": [asdict(r) for r in state.history],
        "server_opt_scalars": scalars,
        "num_arrays": len(state.weights),
    }
    (tmp / "state.json").write_text(json.dumps(meta, indent=1))
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
    )


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)
