"""Learner-level tuning: a learner picks its own local settings (``local.lr``,
``local.epochs``, ..., and numeric ``task.params.<name>``) on its own data before it trains.

The ``local_tuning`` transform runs a small in-memory Optuna study on the learner: each
local trial trains the received model on part of the learner's training data (through
the rest of the chain, so a strategy's gradient terms apply) and scores it on the
held-out rest. The chosen values are kept in the learner's state, so they hold for
later rounds and across a resume, and are used for the round's training on all the
data. Only the chosen values (``tune.<path>``) and the local study's summary
(``tune.trials``, ``tune.best_value``, on the rounds it tuned) leave the learner, as
reply metrics; its data and its trials' models never do.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np

from fedpilot.hpo.space import suggest
from fedpilot.learner.protocol import TASK_PARAM_PREFIX
from fedpilot.spec import FederationSpec
from fedpilot.spec.transforms import TransformSpec
from fedpilot.spec.tune import SearchParam
from fedpilot.transforms import TRANSFORMS, LearnerContext, LearnerOutput, LocalWork, Work
from fedpilot.transforms._base import UpdateTransform
from fedpilot.types import LearnerState

CONFIG_KEYS: dict[str, str] = {
    "local.lr": "lr",
    "local.epochs": "local-epochs",
    "local.batch_size": "batch-size",
    "local.momentum": "momentum",
    "local.weight_decay": "weight-decay",
}
"""Each tunable local setting's key in a train instruction's config; a task's own param
``task.params.<name>`` goes as ``task.<name>``."""

METRIC_PREFIX = "tune."


def learner_tuning_transforms(spec: FederationSpec) -> list[TransformSpec]:
    """The chain's ``local_tuning`` entry (none unless ``tune.learner`` is set)."""
    if spec.tune is None or spec.tune.learner is None:
        return []
    section = spec.tune.learner
    params: dict[str, Any] = {
        "space": {path: p.model_dump(exclude_defaults=True) for path, p in section.space.items()},
        "trials": section.trials,
        "every": section.every,
        "validation_fraction": section.validation_fraction,
        "metric": section.metric or spec.guard.metric,
        "maximize": spec.guard.mode == "max",
        "seed": spec.seed,
    }
    return [TransformSpec(name="local_tuning", params=params)]


@TRANSFORMS.register("local_tuning")
class LocalTuning(UpdateTransform):
    """Tunes the learner's local settings on its own data (see the module's docstring)."""

    name = "local_tuning"

    def __init__(
        self,
        *,
        space: Mapping[str, Mapping[str, Any]],
        trials: int,
        every: int,
        validation_fraction: float,
        metric: str,
        maximize: bool,
        seed: int,
    ) -> None:
        self.space = {path: SearchParam(**dict(p)) for path, p in space.items()}
        self.paths = sorted(self.space)
        self.trials = trials
        self.every = every
        self.validation_fraction = validation_fraction
        self.metric = metric
        self.maximize = maximize
        self.seed = seed

    def on_learner(
        self, work: LocalWork, run: Work, *, state: LearnerState, ctx: LearnerContext
    ) -> LearnerOutput:
        if work.kind != "train":
            return run(work)
        summary: dict[str, float] = {}
        if self._due(state, ctx.round):
            chosen, summary = self._tune(work, run, ctx)
            state["values"] = [np.array([chosen[p] for p in self.paths], dtype=np.float64)]
            state["tuned_round"] = [np.array([ctx.round], dtype=np.int64)]
        values = dict(zip(self.paths, (float(v) for v in state["values"][0]), strict=True))
        out = run(replace(work, config={**work.config, **self._config(values)}))
        shared = {f"{METRIC_PREFIX}{p}": v for p, v in values.items()}
        return replace(out, metrics={**out.metrics, **shared, **summary})

    def _due(self, state: LearnerState, round_: int) -> bool:
        if "values" not in state:
            return True
        last = int(state["tuned_round"][0][0])
        return self.every > 0 and round_ - last >= self.every

    def _config(self, values: Mapping[str, float]) -> dict[str, Any]:
        config: dict[str, Any] = {}
        for path, value in values.items():
            whole = path == "local.batch_size" or self.space[path].kind == "int"
            key = CONFIG_KEYS.get(path) or TASK_PARAM_PREFIX + path.removeprefix("task.params.")
            config[key] = int(value) if whole else float(value)
        return config

    def _tune(
        self, work: LocalWork, run: Work, ctx: LearnerContext
    ) -> tuple[dict[str, float], dict[str, float]]:
        """The best values of a local study and its summary."""
        import optuna

        data = work.data
        if not hasattr(data, "subset") or len(data) < 2:
            raise ValueError(
                "`tune.learner` needs a learner dataset with `subset` (an ArrayDataset) "
                f"and at least 2 examples, got {type(data).__name__} of {len(data)}"
            )
        # Seeded by the run's seed, the learner and the round: reproducible, and each
        # learner draws its own split and trials.
        seq = np.random.SeedSequence([self.seed, zlib.crc32(ctx.learner.encode()), ctx.round])
        split_seed, study_seed = (int(s) for s in seq.generate_state(2))
        order = np.random.default_rng(split_seed).permutation(len(data))
        held = min(len(data) - 1, max(1, round(len(data) * self.validation_fraction)))
        validation, train = data.subset(order[:held]), data.subset(order[held:])
        task = ctx.task

        def objective(trial: optuna.Trial) -> float:
            values = {p: float(v) for p, v in suggest(trial, self.space).items()}
            config = {**work.config, **self._config(values)}
            trained = run(replace(work, data=train, config=config))
            task.set_weights(trained.weights)
            score = task.evaluate(validation).get(self.metric)
            if score is None:
                raise ValueError(
                    f"`tune.learner.metric`: the task's evaluation has no {self.metric!r}"
                )
            return float(score)

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(
            direction="maximize" if self.maximize else "minimize",
            sampler=optuna.samplers.TPESampler(seed=study_seed),
        )
        study.optimize(objective, n_trials=self.trials)
        best = study.best_trial
        chosen = {p: float(best.params[p]) for p in self.paths}
        summary = {
            f"{METRIC_PREFIX}trials": float(len(study.trials)),
            f"{METRIC_PREFIX}best_value": float(best.value if best.value is not None else 0.0),
        }
        return chosen, summary


__all__ = ["CONFIG_KEYS", "LocalTuning", "learner_tuning_transforms"]
