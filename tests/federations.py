"""Small digits-mlp federations for tests that run the whole loop, and a Ctrl-C stand-in."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fedpilot.orchestrator.events import Callback, RoundSummary
from fedpilot.spec import FederationSpec, validate_spec
from fedpilot.types import RoundContext


def digits_spec(tmp_path: Path, name: str, **changes: Any) -> FederationSpec:
    """A 6-learner, 4-round digits federation under ``tmp_path/name``; a dict in
    ``changes`` is merged into its section, anything else replaces it."""
    raw: dict[str, Any] = {
        "name": name,
        "seed": 7,
        "task": {"name": "digits-mlp", "params": {"hidden": 16}},
        "data": {"num_learners": 6, "partition": "dirichlet(0.5)"},
        "rounds": 4,
        "sampling": {"fraction": 0.5, "min_learners": 1},
        "local": {"epochs": 1, "batch_size": 16, "lr": 0.05},
        "guard": {"enabled": False},
        "tracking": {"enabled": False},
        "output_dir": str(tmp_path / name),
    }
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(raw.get(key), dict):
            raw[key] = {**raw[key], **value}
        else:
            raw[key] = value
    return validate_spec(raw)


class StopAfter(Callback):
    """Ctrl-C right after round ``round_`` was checkpointed."""

    def __init__(self, round_: int) -> None:
        self.round = round_

    def on_round_end(self, *, ctx: RoundContext, summary: RoundSummary) -> None:
        if summary.round == self.round:
            raise KeyboardInterrupt
