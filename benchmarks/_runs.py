"""Helpers for benchmarks that run whole federations: build a spec from a base dict
plus changes, run it without tracking, and read the global model after every round."""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fedpilot.launch import run_federation
from fedpilot.orchestrator import load_checkpoint
from fedpilot.orchestrator.events import Callback, RoundSummary, RunInfo, RunResult
from fedpilot.spec import FederationSpec, validate_spec
from fedpilot.types import RoundContext


def merged(base: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``changes`` merged in, nested mappings key by key."""
    out = copy.deepcopy(dict(base))
    for key, value in changes.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merged(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


class GlobalTrainLoss(Callback):
    """After every round, the global model's loss on all learners' training data (the
    quantity the FedProx paper plots), read from the round's checkpoint."""

    def __init__(self) -> None:
        self.losses: list[float] = []
        self._run: RunInfo | None = None

    def on_run_start(self, *, run: RunInfo) -> None:
        self._run = run

    def on_round_end(self, *, ctx: RoundContext, summary: RoundSummary) -> None:
        assert self._run is not None and self._run.task is not None
        # The round's checkpoint is written before on_round_end: the newest one is it.
        task = self._run.task
        task.set_weights(load_checkpoint(self._run.run_dir).weights)
        self.losses.append(float(task.evaluate(task.pooled_train_data())["loss"]))


def run_spec(
    raw: Mapping[str, Any], *, callbacks: list[Callback] | None = None
) -> tuple[FederationSpec, RunResult]:
    """Run the spec ``raw`` (tracking off, output in a temporary folder)."""
    with tempfile.TemporaryDirectory(prefix="fedpilot-bench-") as out:
        spec = validate_spec(
            merged(raw, {"output_dir": str(Path(out)), "tracking": {"enabled": False}})
        )
        result = run_federation(spec, callbacks=callbacks or [], default_tracking=False)
    return spec, result
