"""Fixtures of the tracking tests: hand-built hook arguments, a tiny torch Task, one MLflow store.

Creating an MLflow SQLite store runs its migrations (seconds), so each test process
shares one store; tests keep apart by experiment name and run directory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from fedpilot.orchestrator.events import (
    RoundRecord,
    RoundStatus,
    RoundSummary,
    RunInfo,
    RunResult,
    RunStatus,
    UpdateVerdict,
)
from fedpilot.spec import FederationSpec, validate_spec
from fedpilot.tasks._base import ModelArtifact, Task
from fedpilot.tracking import EventLogCallback
from fedpilot.types import Metrics, RoundContext, Weights

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


class TinyTorchTask(Task):
    """A Task around one ``nn.Linear``: enough for MLflow's pytorch flavor."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        torch.manual_seed(self.seed)
        self.model = nn.Linear(3, 2)

    def get_weights(self) -> Weights:
        return [t.detach().cpu().numpy().copy() for t in self.model.state_dict().values()]

    def set_weights(self, weights: Weights) -> None:
        keys = list(self.model.state_dict())
        self.model.load_state_dict(
            {k: torch.from_numpy(np.asarray(w)) for k, w in zip(keys, weights, strict=True)}
        )

    def train(self, data: Any, settings: Any) -> Metrics:
        return {"loss": 0.0}

    def evaluate(self, data: Any) -> Metrics:
        return {"loss": 0.0}

    def model_artifact(self) -> ModelArtifact:
        return ModelArtifact(flavor="pytorch", model=self.model)


class BrokenArtifactTask(TinyTorchTask):
    """Its model cannot be built for MLflow: the callback must fall back to raw weights."""

    def model_artifact(self) -> ModelArtifact:
        raise RuntimeError("no model for you")


def final_weights() -> Weights:
    """Weights unlike any fresh ``nn.Linear(3, 2)``: a logged model must carry exactly these."""
    return [
        np.arange(6, dtype=np.float32).reshape(2, 3) / 10,
        np.array([0.5, -0.5], dtype=np.float32),
    ]


@dataclass
class Build:
    """Builders of hook arguments; tests get one through the ``build`` fixture."""

    mlflow_uri: str
    TinyTorchTask = TinyTorchTask
    BrokenArtifactTask = BrokenArtifactTask
    final_weights = staticmethod(final_weights)

    def spec(self, tmp_path: Path, name: str = "tracking-demo", **raw: Any) -> FederationSpec:
        data: dict[str, Any] = {
            "name": name,
            "task": {"name": "tests:TinyTorchTask", "params": {"hidden": [4, 2], "odd/key": 1}},
            "rounds": 3,
            "output_dir": str(tmp_path),
            "tracking": {"mlflow_uri": self.mlflow_uri},
        }
        data.update(raw)
        return validate_spec(data)

    @staticmethod
    def run(
        spec: FederationSpec,
        run_id: str = "run-1",
        *,
        task: Task | None = None,
        start_round: int = 1,
    ) -> RunInfo:
        return RunInfo(
            run_id=run_id,
            run_dir=spec.output_dir / run_id,
            spec=spec,
            start_round=start_round,
            task=task,
        )

    @staticmethod
    def ctx(round_: int, total: int = 3, run_id: str = "run-1") -> RoundContext:
        return RoundContext(run_id=run_id, round=round_, total_rounds=total, seed=0)

    @staticmethod
    def summary(
        round_: int,
        status: RoundStatus = "completed",
        *,
        learners: int = 2,
        accuracy: float | None = None,
    ) -> RoundSummary:
        ids = tuple(f"l{i}" for i in range(learners))
        acc = 0.5 + 0.1 * round_ if accuracy is None else accuracy
        return RoundSummary(
            round=round_,
            status=status,
            participants=(*ids, "bad", "gone"),
            accepted=ids,
            rejected={"bad": "update norm 1e9 exceeds the bound 100"},
            failed={"gone": "timed out after 600 s"},
            train_loss=1.0 / round_,
            candidate_metrics={"accuracy": acc - 0.2 if status == "rolled_back" else acc},
            global_metrics={"accuracy": acc, "loss": 2.0 / round_},
            learner_metrics={i: {"loss": 0.1 * n, "accuracy": 0.5} for n, i in enumerate(ids)},
            duration=1.5,
            bytes_sent=1000 * round_,
            bytes_received=900 * round_,
            reason="accuracy dropped" if status == "rolled_back" else None,
        )

    @staticmethod
    def result(
        summaries: list[RoundSummary],
        status: RunStatus = "completed",
        *,
        weights: Weights | None = None,
        error: str | None = None,
    ) -> RunResult:
        history = tuple(
            RoundRecord(
                round=s.round,
                status=s.status,
                participants=len(s.participants),
                accepted=len(s.accepted),
                rejected=len(s.rejected),
                failed=len(s.failed),
                train_loss=s.train_loss,
                duration=s.duration,
                bytes_sent=s.bytes_sent,
                bytes_received=s.bytes_received,
                metrics=dict(s.global_metrics),
            )
            for s in summaries
        )
        return RunResult(
            status=status,
            rounds_completed=len(summaries),
            final_metrics=dict(summaries[-1].global_metrics) if summaries else {},
            rollbacks=sum(s.status == "rolled_back" for s in summaries),
            weights=final_weights() if weights is None else weights,
            history=history,
            error=error,
        )

    def drive_events(self, info: RunInfo, rounds: list[int], **result_kw: Any) -> None:
        """Every hook of a short federation, as the orchestrator would call them."""
        log = EventLogCallback()
        log.on_run_start(run=info)
        summaries = []
        for number in rounds:
            ctx = self.ctx(number, total=info.spec.rounds, run_id=info.run_id)
            log.on_round_start(ctx=ctx, participants=("l0", "l1", "bad", "gone"))
            log.on_update(
                ctx=ctx, learner="l0", verdict=UpdateVerdict(accepted=True, num_examples=8)
            )
            log.on_update(
                ctx=ctx,
                learner="l1",
                verdict=UpdateVerdict(
                    accepted=True, num_examples=np.int64(4), metrics={"loss": np.float32(0.25)}
                ),
            )
            log.on_update(
                ctx=ctx,
                learner="bad",
                verdict=UpdateVerdict(accepted=False, reason="norm too large"),
            )
            log.on_update(
                ctx=ctx,
                learner="gone",
                verdict=UpdateVerdict(accepted=False, failed=True, reason="timed out"),
            )
            status = "rolled_back" if number == 2 else "completed"
            if status == "rolled_back":
                log.on_model_rolled_back(
                    ctx=ctx, reason="accuracy dropped", candidate={"accuracy": 0.1}, stable={}
                )
            summary = self.summary(number, status)
            summaries.append(summary)
            log.on_round_end(ctx=ctx, summary=summary)
        log.on_run_end(run=info, result=self.result(summaries, **result_kw))


@pytest.fixture(scope="session")
def mlflow_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One SQLite tracking store per test process (its folder does not exist yet)."""
    db = tmp_path_factory.mktemp("mlflow") / "store" / "mlflow.db"
    return f"sqlite:///{db}"


@pytest.fixture(scope="session")
def build(mlflow_uri: str) -> Build:
    return Build(mlflow_uri)
