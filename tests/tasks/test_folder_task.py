"""A user's Task whose data is per-learner folders of files, in a real local federation."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from _apps.folder_task import blobs, write_folder
from fedpilot.launch import run_federation
from fedpilot.orchestrator.events import Callback, UpdateVerdict
from fedpilot.spec import validate_spec
from fedpilot.types import LearnerId, RoundContext

APPS_DIR = Path(__file__).parents[1] / "_apps"


class _Examples(Callback):
    def __init__(self) -> None:
        self.seen: dict[LearnerId, int] = {}

    def on_update(self, *, ctx: RoundContext, learner: LearnerId, verdict: UpdateVerdict) -> None:
        assert verdict.accepted, verdict.reason
        self.seen[learner] = verdict.num_examples


def test_a_federation_trains_from_per_learner_directories(tmp_path: Path) -> None:
    root = tmp_path / "data"
    sizes = [20, 35, 50]
    for i, n in enumerate(sizes):
        x, y = blobs(n, seed=10 + i)
        write_folder(root / f"learner-{i}" / "train", x, y)
    x, y = blobs(60, seed=99)
    write_folder(root / "server", x, y)
    spec = validate_spec(
        {
            "name": "folders",
            "seed": 2,
            "task": {"name": "folder_task:FolderTask", "params": {"root": str(root)}},
            "data": {"num_learners": len(sizes)},
            "rounds": 3,
            "local": {"epochs": 1, "batch_size": 8, "lr": 0.2},
            "sampling": {"fraction": 1.0},
            "guard": {"enabled": False},
            "tracking": {"enabled": False},
            "runtime": {"mode": "local", "workers": 0},
            "output_dir": str(tmp_path / "runs"),
            "base_dir": str(APPS_DIR),
        }
    )
    examples = _Examples()
    result = run_federation(spec, callbacks=[examples])
    assert result.status == "completed", result.error
    assert result.rounds_completed == 3
    # Each learner declared and trained on the files of its own folder.
    assert examples.seen == {str(i): n for i, n in enumerate(sizes)}
    # Centrally evaluated on the server's folder: blobs that far apart are learned.
    assert result.final_metrics["accuracy"] > 0.9
    assert not np.array_equal(result.weights[0], np.zeros_like(result.weights[0]))
