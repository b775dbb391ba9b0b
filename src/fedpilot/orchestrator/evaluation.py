"""Evaluating a global model: centrally on the server-held test set, or federated on
learners' held-out splits."""

from __future__ import annotations

import time
from dataclasses import replace

from fedpilot.data._base import ArrayDataset
from fedpilot.fleet import Fleet
from fedpilot.learner.sysmetrics import PREFIX as SYS_PREFIX
from fedpilot.spec.sections import EvaluationSpec
from fedpilot.tasks._base import Task
from fedpilot.types import Instruction, LearnerId, Metrics, Reply, Weights, derive_rng
from fedpilot.validation import UpdateValidator

FEDERATED_PREFIX = "federated_"


class Evaluator:
    """Decides what to evaluate each round and does it.

    Central metrics keep their names (``accuracy``, ``loss``); federated ones are
    prefixed ``federated_``. With no server-held test set the federated metrics are
    also given plain names, so ``guard.metric: accuracy`` works either way. When the
    guard is on, every round is evaluated: a model cannot be judged unseen.

    Evaluation replies are validated like updates (``validator``): one with an
    implausible ``num-examples`` or a metric that is no measurement is left out of the
    federated metrics, and :meth:`take_refused` says why.
    """

    def __init__(
        self,
        spec: EvaluationSpec,
        *,
        task: Task | None,
        fleet: Fleet,
        seed: int,
        total_rounds: int,
        every_round: bool,
        round_timeout: float,
        validator: UpdateValidator | None = None,
    ) -> None:
        self._spec = spec
        self._task = task
        self._fleet = fleet
        self._seed = seed
        self._total_rounds = total_rounds
        self._every_round = every_round
        """The guard is on: a model cannot be judged unseen."""
        self._round_timeout = round_timeout
        self._validator = validator if validator is not None else UpdateValidator()
        self._told: list[tuple[int, str, str]] = []
        self._test: ArrayDataset | None = task.central_test_data() if task is not None else None

    @property
    def has_central(self) -> bool:
        return self._test is not None and len(self._test) > 0

    def evaluate(self, weights: Weights, round_: int) -> Metrics:
        """Metrics for ``weights`` after round ``round_`` (0: the initial model)."""
        spec = self._spec
        # The guard judges every round against the last accepted model, the initial one
        # included; without it only the final model must be measured.
        needed = self._every_round or round_ == self._total_rounds
        metrics: Metrics = {}
        if self.has_central and (needed or _due(round_, spec.central_every)):
            metrics.update(self._central(weights))
        wants_federated = _due(round_, spec.federated_every) or (not self.has_central and needed)
        if wants_federated:
            federated = self._federated(weights, round_)
            metrics.update({FEDERATED_PREFIX + k: v for k, v in federated.items()})
            if not self.has_central:
                metrics.update(federated)
        return metrics

    def take_refused(self) -> list[tuple[int, str, str]]:
        """(round, warning code, why) for each evaluation reply left out since the last
        call: ``evaluation-refused`` (failed validation) or ``evaluation-failed``."""
        told, self._told = self._told, []
        return told

    def _central(self, weights: Weights) -> Metrics:
        assert self._task is not None and self._test is not None
        self._task.set_weights(weights)
        return self._task.evaluate(self._test)

    def _federated(self, weights: Weights, round_: int) -> Metrics:
        learners = list(self._fleet.learners())
        if not learners:
            return {}
        rng = derive_rng(self._seed, round_, "federated-evaluation")
        size = max(1, round(self._spec.federated_fraction * len(learners)))
        chosen = sorted(rng.choice(len(learners), size=size, replace=False).tolist())
        instruction = Instruction("evaluate", weights, {"server-round": round_})
        deadline = time.monotonic() + self._round_timeout
        counted: dict[LearnerId, tuple[int, Metrics]] = {}
        refused: dict[LearnerId, str] = {}
        for reply in self._fleet.dispatch(
            {learners[i].id: instruction for i in chosen}, deadline=deadline
        ):
            if not reply.ok:
                self._told.append((round_, "evaluation-failed", _failed(reply)))
                continue
            # What the evaluation cost each learner's machine is not a model metric.
            own = {k: v for k, v in reply.metrics.items() if not k.startswith(SYS_PREFIX)}
            check = self._validator.check_evaluation(replace(reply, metrics=own))
            if check.ok:
                counted[reply.learner] = (check.num_examples, own)
            else:
                refused[reply.learner] = check.reason or "refused"
        claims = {k: n for k, (n, _) in counted.items()}
        refused.update(self._validator.cohort_outliers({}, claims))
        self._told += [
            (round_, "evaluation-refused", f"learner {k}'s evaluation reply was refused: {why}")
            for k, why in sorted(refused.items())
        ]
        totals: dict[str, float] = {}
        examples: dict[str, float] = {}
        for learner, (n, metrics) in sorted(counted.items()):
            if learner in refused:
                continue
            for key, value in metrics.items():
                totals[key] = totals.get(key, 0.0) + n * value
                # Per metric: a reply without it does not dilute the others'.
                examples[key] = examples.get(key, 0.0) + n
        return {k: v / examples[k] for k, v in totals.items()}


def _failed(reply: Reply) -> str:
    return f"learner {reply.learner}'s evaluation failed: {reply.error}"


def _due(round_: int, every: int) -> bool:
    return every > 0 and round_ > 0 and round_ % every == 0
