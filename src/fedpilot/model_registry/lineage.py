"""Lineage of a registered model: where it comes from, as model version tags.

Never data: a learner is fingerprinted by the number of examples it declared in its
accepted updates (read back from the run's event log, so a resumed run's earlier rounds
count too) and the hash of the partition recipe (the spec's ``data`` section and seed,
which fix every learner's share when learners take theirs from the spec's dataset).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import fedpilot
from fedpilot.model_registry.gates import GateRules, Measured
from fedpilot.orchestrator.events import RoundRecord, RunInfo, RunResult
from fedpilot.orchestrator.vocabulary import EventType
from fedpilot.rundir import RunDir
from fedpilot.tracking import _mlflow_utils as mu
from fedpilot.tracking.event_log import EventLogReader
from fedpilot.types import Weights

TAG = "fedpilot."
RUN_ID, MLFLOW_RUN_ID, RUN_DIR = f"{TAG}run_id", f"{TAG}mlflow_run_id", f"{TAG}run_dir"
SPEC_HASH, VERSION, GIT_COMMIT = f"{TAG}spec_hash", f"{TAG}version", f"{TAG}git_commit"
MODEL_ROUND = f"{TAG}model_round"
CENTRAL, WORST, WORST_LEARNER = (
    f"{TAG}metric.central",
    f"{TAG}metric.worst_learner",
    f"{TAG}worst_learner",
)
RECIPE, LEARNERS, FINGERPRINT = f"{TAG}data.recipe", f"{TAG}data.learners", f"{TAG}data.fingerprint"

_SPEC_PARTITIONS = ("local", "ray")
"""Runtimes whose learners take their data from the spec's dataset (partition i)."""


@dataclass(frozen=True)
class Lineage:
    """What a model version records about its origin (see :meth:`tags`)."""

    run_id: str
    mlflow_run_id: str
    run_dir: str
    spec_hash: str
    model_round: int
    """The last round whose model the guard kept (never a rolled-back candidate)."""
    version: str
    git_commit: str | None
    recipe: str
    learners: Mapping[str, int]
    """Learner id → examples it declared in its last accepted update."""
    measured: Measured
    worst_learner: str | None

    def tags(self) -> dict[str, str]:
        learners = json.dumps(dict(sorted(self.learners.items())), separators=(",", ":"))
        tags = {
            RUN_ID: self.run_id,
            MLFLOW_RUN_ID: self.mlflow_run_id,
            RUN_DIR: self.run_dir,
            SPEC_HASH: self.spec_hash,
            MODEL_ROUND: str(self.model_round),
            VERSION: self.version,
            RECIPE: self.recipe,
            FINGERPRINT: hashlib.sha256(f"{self.recipe}:{learners}".encode()).hexdigest()[:16],
            # A federation of thousands may not fit a tag: the fingerprint still covers it.
            LEARNERS: mu.truncate(learners, mu.MAX_TAG_VALUE_LENGTH),
        }
        if self.git_commit:
            tags[GIT_COMMIT] = self.git_commit
        if self.measured.central is not None:
            tags[CENTRAL] = repr(self.measured.central)
        if self.measured.worst_learner is not None:
            tags[WORST] = repr(self.measured.worst_learner)
        if self.worst_learner is not None:
            tags[WORST_LEARNER] = self.worst_learner
        return tags


def lineage_of(run: RunInfo, result: RunResult, *, mlflow_run_id: str, rules: GateRules) -> Lineage:
    """The lineage of a completed run's final model (``result.weights``)."""
    worst = worst_learner(run, result.weights, rules)
    central = result.final_metrics.get(rules.metric)
    return Lineage(
        run_id=run.run_id,
        mlflow_run_id=mlflow_run_id,
        run_dir=str(run.run_dir.resolve()),
        spec_hash=run.spec.digest(),
        model_round=model_round(result.history),
        version=fedpilot.__version__,
        git_commit=mu.git_commit(),
        recipe=partition_recipe(run),
        learners=declared_examples(RunDir(run.run_dir)),
        measured=Measured(
            central=central if central is not None and math.isfinite(central) else None,
            worst_learner=None if worst is None else worst[1],
        ),
        worst_learner=None if worst is None else worst[0],
    )


def model_round(history: tuple[RoundRecord, ...]) -> int:
    """The round the run's final model comes from: the last one whose model was kept.
    A rolled-back round's candidate was thrown away and a failed round made none, so the
    final model is the one of the last completed round (0: the initial model)."""
    kept = [r.round for r in history if r.status == "completed"]
    return max(kept, default=0)


def partition_recipe(run: RunInfo) -> str:
    """A hash of what decides every learner's share: the data section and the seed."""
    recipe = {"data": run.spec.data.model_dump(mode="json"), "seed": run.spec.seed}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


def declared_examples(run_dir: RunDir) -> dict[str, int]:
    """Each learner's examples as its last accepted update declared them."""
    counts: dict[str, int] = {}
    for event in EventLogReader(run_dir.events):
        if event.get("event") != EventType.UPDATE_ACCEPTED.value:
            continue
        learner, examples = event.get("learner"), event.get("num_examples")
        if isinstance(learner, str) and isinstance(examples, int):
            counts[learner] = examples
    return counts


def worst_learner(run: RunInfo, weights: Weights, rules: GateRules) -> tuple[str, float] | None:
    """(learner, metric) of the learner on whose held-out split the final model does
    worst, measured at registration with the server's Task; None where the server does
    not hold the learners' data (learners on their own machines, a plain ClientApp) or
    no learner has a held-out split reporting the metric."""
    task = run.task
    if task is None or run.spec.runtime.mode not in _SPEC_PARTITIONS or not weights:
        return None
    task.set_weights(weights)
    values: dict[str, float] = {}
    for index in range(run.spec.data.num_learners):
        held_out: Any = task.learner_data(index).test
        if held_out is None or len(held_out) == 0:
            continue
        value = task.evaluate(held_out).get(rules.metric)
        if value is not None and math.isfinite(value):
            values[str(index)] = float(value)
    if not values:
        return None
    pick = min if rules.mode == "max" else max
    learner = pick(values, key=lambda k: values[k])
    return learner, values[learner]


def measured(tags: Mapping[str, str]) -> Measured:
    """The metrics a version's lineage tags hold (None where absent or unreadable)."""
    return Measured(central=_float(tags.get(CENTRAL)), worst_learner=_float(tags.get(WORST)))


def _float(text: str | None) -> float | None:
    try:
        return None if text is None else float(text)
    except ValueError:
        return None


__all__ = ["Lineage", "lineage_of", "measured", "model_round"]
