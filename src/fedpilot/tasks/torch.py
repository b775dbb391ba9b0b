"""PyTorch adapter: subclass :class:`TorchTask` and implement ``build_model``.

Training indexes whole-dataset tensors directly instead of going through a
``DataLoader``: learners' shares are small and in memory, and for small models the
loader's per-batch overhead would cost more than the arithmetic.
"""

from __future__ import annotations

import math
import os
from abc import abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from fedpilot._threads import THREADS_ENV
from fedpilot.data._base import ArrayDataset
from fedpilot.errors import TaskError
from fedpilot.spec.sections import DataSpec
from fedpilot.tasks._base import ModelArtifact, Task, TrainSettings, example_rows
from fedpilot.types import Metrics, Weights

if TYPE_CHECKING:
    from fedpilot.transforms._base import GradientTerm

__all__ = ["THREADS_ENV", "TorchTask"]


_threads_configured = False


def _configure_threads() -> None:
    # torch.set_num_threads is process-wide, so it is only touched when asked: a pool of
    # learner processes sets 1 to avoid oversubscribing the cores.
    global _threads_configured
    if _threads_configured:
        return
    value = os.environ.get(THREADS_ENV)
    if value:
        try:
            threads = int(value)
        except ValueError:
            threads = 0
        if threads < 1:
            raise TaskError(f"`{THREADS_ENV}` must be an integer >= 1, got {value!r}")
        torch.set_num_threads(threads)
    _threads_configured = True


class TorchTask(Task):
    """A Task around a ``torch.nn.Module``.

    Subclasses implement :meth:`build_model` and may override :meth:`loss_fn` (default:
    cross-entropy on logits) and :meth:`to_tensors` (default: float32 features, int64
    labels). The model is built once, lazily, under ``torch.manual_seed(self.seed)`` so
    that initial weights depend only on the seed; the global torch RNG is left as it was.

    Weights are the ``state_dict`` entries, parameters and buffers, in order, as float32
    numpy arrays.
    """

    device: ClassVar[str] = "cpu"
    """Where the model and batches live."""
    eval_batch_size: ClassVar[int] = 1024
    """Batch size of :meth:`evaluate` (only memory, not results, depends on it)."""

    def __init__(self, *, data: DataSpec | None = None, seed: int = 0, **params: Any) -> None:
        super().__init__(data=data, seed=seed, **params)
        _configure_threads()
        self._model: nn.Module | None = None

    # -- to implement ----------------------------------------------------------------

    @abstractmethod
    def build_model(self) -> nn.Module:
        """A freshly initialised model; called once, under the task's seed."""

    def loss_fn(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean loss of a batch; cross-entropy on logits unless overridden."""
        return F.cross_entropy(outputs, targets)

    def to_tensors(self, data: ArrayDataset) -> tuple[torch.Tensor, torch.Tensor]:
        """Features and targets as tensors on :attr:`device`."""
        x = torch.from_numpy(np.ascontiguousarray(data.x, dtype=np.float32))
        y = torch.from_numpy(np.ascontiguousarray(data.y, dtype=np.int64))
        return x.to(self.device), y.to(self.device)

    # -- Task ------------------------------------------------------------------------

    @property
    def model(self) -> nn.Module:
        """The task's model, built on first use."""
        if self._model is None:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed)
                model = self.build_model()
            self._model = model.to(self.device)
        return self._model

    def get_weights(self) -> Weights:
        """Copies of the ``state_dict`` entries as float32 arrays."""
        return [
            t.detach().cpu().numpy().astype(np.float32, copy=True)
            for t in self.model.state_dict().values()
        ]

    def set_weights(self, weights: Weights) -> None:
        """Load arrays in ``state_dict`` order; dtypes follow the model's tensors.

        Raises:
            TaskError: The number of arrays or a shape does not match the model.
        """
        state = self.model.state_dict()
        if len(weights) != len(state):
            raise TaskError(
                f"expected {len(state)} weight arrays for this model, got {len(weights)}"
            )
        for i, ((name, tensor), array) in enumerate(zip(state.items(), weights, strict=True)):
            if tuple(array.shape) != tuple(tensor.shape):
                raise TaskError(
                    f"weight {i} ({name}) must have shape {tuple(tensor.shape)}, "
                    f"got {tuple(array.shape)}"
                )
        with torch.no_grad():
            for tensor, array in zip(state.values(), weights, strict=True):
                # Arrays decoded from messages can be read-only; torch wants writable.
                source = np.require(array, requirements=["C", "W"])
                tensor.copy_(torch.from_numpy(source))

    def train(
        self,
        data: ArrayDataset,
        settings: TrainSettings,
        *,
        gradient_terms: Sequence[GradientTerm] = (),
    ) -> Metrics:
        """Mini-batch training; returns ``loss`` (mean batch loss, without any gradient
        term's objective) and ``local_steps`` (optimizer steps taken, which FedNova and
        SCAFFOLD need).

        ``settings.epochs`` may be fractional: ``0.5`` runs half of one epoch's batches.
        Batches are drawn from a ``torch.Generator`` seeded with ``settings.seed``, and a
        fresh optimizer is made per call, so the same weights, data and settings give the
        same result.

        ``gradient_terms`` (FedProx's proximal term, SCAFFOLD's c - c_i) are called for
        every trainable parameter after every backward pass, with the parameter's index
        in :meth:`get_weights` and its value when training began; what they return is
        added to its gradient, scaled by the term's ``alpha``. Buffers take no term.

        Raises:
            TaskError: ``data`` is empty or the settings are unusable.
        """
        if len(data) == 0:
            raise TaskError("cannot train on an empty dataset")
        if settings.batch_size < 1 or settings.epochs <= 0:
            raise TaskError(
                "`batch_size` must be >= 1 and `epochs` > 0, got "
                f"batch_size={settings.batch_size}, epochs={settings.epochs}"
            )
        model = self.model
        x, y = self.to_tensors(data)
        n, batch = len(x), settings.batch_size
        total_steps = max(1, round(settings.epochs * math.ceil(n / batch)))
        generator = torch.Generator().manual_seed(settings.seed)
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = _make_optimizer(params, settings)
        terms = list(gradient_terms)
        indexed = self._indexed_parameters() if terms else []
        anchor = [p.detach().clone() for _, p in indexed]
        model.train()
        loss_sum = torch.zeros((), device=x.device)
        seen = steps = 0
        while steps < total_steps:
            order = torch.randperm(n, generator=generator)
            for start in range(0, n, batch):
                if steps == total_steps:
                    break
                idx = order[start : start + batch]
                optimizer.zero_grad(set_to_none=True)
                loss = self.loss_fn(model(x[idx]), y[idx])
                torch.autograd.backward(loss)
                if terms:
                    add_gradient_terms(terms, indexed, anchor)
                optimizer.step()
                loss_sum += loss.detach() * len(idx)
                seen += len(idx)
                steps += 1
        return {"loss": float(loss_sum) / seen, "local_steps": float(steps)}

    def _indexed_parameters(self) -> list[tuple[int, nn.Parameter]]:
        # get_weights() lists state_dict entries (parameters and buffers); only trainable
        # parameters take gradient terms, each with its position in that list.
        position = {name: i for i, name in enumerate(self.model.state_dict().keys())}
        return [
            (position[name], p)
            for name, p in self.model.named_parameters()
            if p.requires_grad and name in position
        ]

    def evaluate(self, data: ArrayDataset) -> Metrics:
        """Mean ``loss`` and, for class logits with integer targets, ``accuracy``.

        Raises:
            TaskError: ``data`` is empty.
        """
        if len(data) == 0:
            raise TaskError("cannot evaluate on an empty dataset")
        model = self.model
        x, y = self.to_tensors(data)
        loss_sum = 0.0
        correct = 0
        classify = not torch.is_floating_point(y)
        model.eval()
        with torch.no_grad():
            for start in range(0, len(x), self.eval_batch_size):
                stop = start + self.eval_batch_size
                xb, yb = x[start:stop], y[start:stop]
                out = model(xb)
                loss_sum += float(self.loss_fn(out, yb)) * len(yb)
                if classify and out.dim() == 2:
                    correct += int((out.argmax(dim=1) == yb).sum())
                else:
                    classify = False
        metrics = {"loss": loss_sum / len(x)}
        if classify:
            metrics["accuracy"] = correct / len(x)
        return metrics

    def model_artifact(self) -> ModelArtifact:
        """The module itself, for MLflow's pytorch flavor, with a few float32 rows of the
        server-held data as its input example and the model's outputs for them (a
        classifier's class scores, shape (-1, n_classes)) as its output example."""
        rows = example_rows(self)
        if rows is None:
            return ModelArtifact("pytorch", self.model)
        example = np.ascontiguousarray(rows, dtype=np.float32)
        model = self.model
        model.eval()
        with torch.no_grad():
            scores = model(torch.from_numpy(example).to(self.device)).cpu().numpy()
        return ModelArtifact("pytorch", model, input_example=example, output_example=scores)


def add_gradient_terms(
    terms: Sequence[GradientTerm], indexed: list[Any], anchor: list[Any]
) -> None:
    """Add each gradient term (FedProx's proximal pull, SCAFFOLD's correction) to the
    gradients of ``indexed`` (index, parameter) pairs, against the received ``anchor``."""
    with torch.no_grad():
        for (i, p), p0 in zip(indexed, anchor, strict=True):
            if p.grad is None:
                continue
            for term in terms:
                shift = term(i, p, p0)
                if shift is not None:
                    p.grad.add_(shift, alpha=term.alpha)


def _make_optimizer(params: list[nn.Parameter], settings: TrainSettings) -> torch.optim.Optimizer:
    if settings.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=settings.lr, momentum=settings.momentum, weight_decay=settings.weight_decay
        )
    if settings.optimizer == "adam":
        return torch.optim.Adam(params, lr=settings.lr, weight_decay=settings.weight_decay)
    raise TaskError(f"`optimizer` must be sgd or adam, got optimizer={settings.optimizer!r}")
