"""``dpsgd``: sample-level DP-SGD in each learner's local training, with Opacus.

The transform sits innermost in the chain (after the user's transforms) and, for a
train instruction, *is* the task's training step: it trains the torch task's own model
through Opacus's ``PrivacyEngine`` (per-record clipping, Gaussian noise, Poisson sampling
of records) instead of ``TorchTask.train``. Gradient terms of outer transforms (FedProx,
SCAFFOLD) are still added, after clipping and noise: they depend only on the round's
global model and earlier (already private) updates, so they cost no privacy.

The learner's accountant is Opacus's own (RDP or PRV); its history — (noise
multiplier, sample rate, steps) triples — is this transform's per-learner state, so it
travels with each instruction, is checkpointed by the server and survives a resume and
a restarted learner. Every train reply carries the learner's ε so far
(``privacy.sample_epsilon``, at ``privacy.sample_delta``); a round's ε is the largest
over every learner so far (the server half keeps each learner's latest; the round's
summary has it in ``privacy``).

Determinism: Opacus runs with ``secure_mode=False``; the records' Poisson sample and the
noise come from ``torch.Generator``\\ s seeded from the instruction's seed (the run's
seed, the round and the learner), so the same spec and seed give the same weights.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np

from fedpilot.errors import SpecError, TaskError
from fedpilot.spec.transforms import TransformSpec
from fedpilot.transforms._base import (
    GradientTerm,
    LearnerContext,
    LearnerOutput,
    LocalWork,
    UpdateTransform,
    Work,
)
from fedpilot.transforms._registry import TRANSFORMS
from fedpilot.types import LearnerState, Metrics, RoundContext, Update, derive_rng

if TYPE_CHECKING:
    from fedpilot.spec import FederationSpec
    from fedpilot.spec.sections import TaskSpec
    from fedpilot.tasks._base import TrainSettings
    from fedpilot.tasks.torch import TorchTask

EPSILON = "privacy.sample_epsilon"
"""The reply metric (and round metric): the learner's record-level ε so far."""
DELTA = "privacy.sample_delta"
NOISE = "privacy.noise_multiplier"
_HISTORY = "history"


def dpsgd_transforms(spec: FederationSpec) -> list[TransformSpec]:
    """The chain's DP-SGD entry for ``spec`` (none unless ``privacy.dpsgd.enabled``)."""
    dp = spec.privacy.dpsgd
    if not dp.enabled:
        return []
    params = dp.model_dump(exclude={"enabled"})
    params["rounds"] = spec.rounds
    return [TransformSpec(name="dpsgd", params=params)]


def dpsgd_refusal(task: TaskSpec, base_dir: Path | None) -> str | None:
    """Why ``privacy.dpsgd.enabled`` cannot go with the spec's ``task``, or None."""
    from fedpilot.tasks import TorchTask, resolve_task_class

    if task.name is None:
        return "`privacy.dpsgd.enabled` needs a torch task, but `task.name` is not set"
    try:
        cls = resolve_task_class(task.name, base_dir)
    except SpecError:
        return None  # the task's own check names that error
    if not issubclass(cls, TorchTask):
        return (
            "`privacy.dpsgd.enabled` needs a torch task (a TorchTask: Opacus trains its model), "
            f"but `task.name`={task.name!r} is a {cls.__name__}"
        )
    return None


def privacy_spent(transforms: Sequence[UpdateTransform]) -> Metrics:
    """The round's privacy metrics from the chain's server halves (none without DP)."""
    spent: Metrics = {}
    for transform in transforms:
        if isinstance(transform, DpSgd):
            spent.update(transform.spent())
    return spent


def epsilon(history: Sequence[tuple[float, float, int]], delta: float, accountant: str) -> float:
    """Opacus's ε(δ) for an accountant ``history`` of (σ, q, steps)."""
    from opacus.accountants import create_accountant

    if not history:
        return 0.0
    acct = create_accountant(mechanism=accountant)
    acct.history = list(history)
    return float(acct.get_epsilon(delta=delta))


@TRANSFORMS.register("dpsgd")
class DpSgd(UpdateTransform):
    """Trains torch tasks with Opacus's DP-SGD; see the module's description.

    Args:
        noise_multiplier: σ over ``max_grad_norm``; or None with ``target_epsilon``.
        target_epsilon: ε each learner reaches after ``rounds`` rounds of local steps.
        max_grad_norm: Per-record gradient bound.
        delta: δ of the reported ε.
        accountant: ``rdp`` or ``prv``.
        rounds: The run's rounds (for ``target_epsilon``).
    """

    name: ClassVar[str] = "dpsgd"

    def __init__(
        self,
        *,
        noise_multiplier: float | None = None,
        target_epsilon: float | None = None,
        max_grad_norm: float = 1.0,
        delta: float = 1e-5,
        accountant: Literal["rdp", "prv"] = "rdp",
        rounds: int = 1,
    ) -> None:
        if (noise_multiplier is None) == (target_epsilon is None):
            raise ValueError("give exactly one of `noise_multiplier` and `target_epsilon`")
        self.noise_multiplier = noise_multiplier
        self.target_epsilon = target_epsilon
        self.max_grad_norm = float(max_grad_norm)
        self.delta = float(delta)
        self.accountant = accountant
        self.rounds = int(rounds)
        self._spent: dict[str, float] = {}  # server half: each learner's latest ε

    def on_learner(
        self, work: LocalWork, run: Work, *, state: LearnerState, ctx: LearnerContext
    ) -> LearnerOutput:
        if work.kind != "train":
            return run(work)
        from fedpilot.learner.protocol import settings_from_config
        from fedpilot.tasks.torch import TorchTask

        task = ctx.task
        if not isinstance(task, TorchTask):
            raise TaskError(f"dpsgd trains torch tasks only, got {type(task).__name__}")
        history = [(float(s), float(q), int(k)) for s, q, k in _rows(state.get(_HISTORY))]
        task.set_weights(work.weights)
        settings = settings_from_config(work.config)
        metrics, history = self.train(
            task, work.data, settings, history=history, terms=work.gradient_terms, ctx=ctx
        )
        state[_HISTORY] = [np.asarray(history, dtype=np.float64).reshape(-1, 3)]
        metrics[EPSILON] = epsilon(history, self.delta, self.accountant)
        metrics[DELTA] = self.delta
        return LearnerOutput(task.get_weights(), metrics, len(work.data))

    # -- server half ----------------------------------------------------------------

    def on_accepted(self, update: Update, *, ctx: RoundContext) -> None:
        del ctx
        if EPSILON in update.metrics:
            self._spent[str(update.learner)] = float(update.metrics[EPSILON])

    def spent(self) -> Metrics:
        """The run's record-level ε so far: the largest any learner has reported."""
        if not self._spent:
            return {}
        return {EPSILON: max(self._spent.values()), DELTA: self.delta}

    def state_dict(self) -> dict[str, Any]:
        return {"epsilon": dict(self._spent)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        # ε only grows: keep the larger of what is held and what is loaded, so a guard's
        # rollback (which loads the pre-round state) does not forget privacy spent.
        for learner, value in state.get("epsilon", {}).items():
            key = str(learner)
            self._spent[key] = max(self._spent.get(key, 0.0), float(value))

    # -- learner half -----------------------------------------------------------------

    def sigma(self, *, sample_rate: float, steps: int) -> float:
        """The noise multiplier: given, or Opacus's for the target over the whole run."""
        if self.noise_multiplier is not None:
            return self.noise_multiplier
        assert self.target_epsilon is not None
        return _calibrated(
            self.target_epsilon, self.delta, sample_rate, self.rounds * steps, self.accountant
        )

    def train(
        self,
        task: TorchTask,
        data: Any,
        settings: TrainSettings,
        *,
        history: list[tuple[float, float, int]],
        terms: Sequence[GradientTerm] = (),
        ctx: LearnerContext,
    ) -> tuple[Metrics, list[tuple[float, float, int]]]:
        """One call's DP-SGD on ``task``'s model; the metrics and the accountant history
        after it (``history`` plus this call's steps)."""
        if len(data) == 0:
            raise TaskError("cannot train on an empty dataset")
        x, y = task.to_tensors(data)
        batches = math.ceil(len(x) / settings.batch_size)
        steps = max(1, round(settings.epochs * batches))
        sigma = self.sigma(sample_rate=1 / batches, steps=steps)
        seeds = derive_rng(settings.seed, ctx.round, "dpsgd").integers(0, 2**62, size=2)
        with warnings.catch_warnings():
            # secure_mode=False on purpose (seeded noise); the hook note is about inputs.
            warnings.filterwarnings("ignore", message="Secure RNG turned off")
            warnings.filterwarnings("ignore", message="Full backward hook is firing")
            return self._train(task, x, y, settings, history, terms, sigma, steps, seeds)

    def _train(
        self,
        task: TorchTask,
        x: Any,
        y: Any,
        settings: TrainSettings,
        history: list[tuple[float, float, int]],
        terms: Sequence[GradientTerm],
        sigma: float,
        steps: int,
        seeds: Any,
    ) -> tuple[Metrics, list[tuple[float, float, int]]]:
        import torch
        from opacus import PrivacyEngine
        from torch.utils.data import DataLoader, TensorDataset

        from fedpilot.tasks.torch import _make_optimizer, add_gradient_terms

        engine = PrivacyEngine(accountant=self.accountant, secure_mode=False)
        engine.accountant.history = list(history)
        loader = DataLoader(
            TensorDataset(x, y),
            batch_size=settings.batch_size,
            generator=torch.Generator().manual_seed(int(seeds[0])),
        )
        model = task.model
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = _make_optimizer(params, settings)
        module, dp_optimizer, dp_loader = engine.make_private(
            module=model,
            optimizer=optimizer,
            data_loader=loader,
            noise_multiplier=sigma,
            max_grad_norm=self.max_grad_norm,
            poisson_sampling=True,
            noise_generator=torch.Generator().manual_seed(int(seeds[1])),
        )
        indexed = task._indexed_parameters() if terms else []
        anchor = [p.detach().clone() for _, p in indexed]
        loss_sum, seen, done = 0.0, 0, 0
        try:
            module.train()
            while done < steps:
                for xb, yb in dp_loader:
                    if done == steps:
                        break
                    dp_optimizer.zero_grad(set_to_none=True)
                    loss = task.loss_fn(module(xb), yb)
                    torch.autograd.backward(loss)
                    # DPOptimizer.step, split so the gradient terms join after the noise.
                    if dp_optimizer.pre_step():
                        add_gradient_terms(terms, indexed, anchor)
                        dp_optimizer.original_optimizer.step()
                    if len(yb):
                        loss_sum += float(loss.detach()) * len(yb)
                        seen += len(yb)
                    done += 1
        finally:
            module._close()  # the task's model goes back to plain torch
        metrics: Metrics = {
            "loss": loss_sum / max(seen, 1),
            "local_steps": float(steps),
            NOISE: sigma,
        }
        return metrics, [(float(s), float(q), int(k)) for s, q, k in engine.accountant.history]


@functools.lru_cache(maxsize=64)
def _calibrated(epsilon: float, delta: float, sample_rate: float, steps: int, kind: str) -> float:
    # Opacus's search takes up to a second; a learner asks the same every round.
    from opacus.accountants.utils import get_noise_multiplier

    return float(
        get_noise_multiplier(
            target_epsilon=epsilon,
            target_delta=delta,
            sample_rate=sample_rate,
            steps=steps,
            accountant=kind,
        )
    )


def _rows(value: Any) -> list[Any]:
    if not value:
        return []
    return [tuple(row) for row in np.asarray(value[0]).reshape(-1, 3)]


__all__ = ["DELTA", "EPSILON", "DpSgd", "dpsgd_refusal", "dpsgd_transforms", "epsilon"]
