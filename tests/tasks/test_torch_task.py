"""The PyTorch adapter: weights, reproducible training, fractional epochs, FedProx."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from fedpilot.data import ArrayDataset
from fedpilot.errors import TaskError
from fedpilot.tasks import TorchTask, TrainSettings
from fedpilot.tasks import torch as torch_adapter
from fedpilot.transforms import GradientTerm
from fedpilot.transforms.proximal import ProximalTerm


class TinyNet(TorchTask):
    """4 features, 3 classes; a BatchNorm layer so buffers are among the weights."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.loss_calls = 0

    def build_model(self) -> nn.Module:
        return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))

    def loss_fn(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if self.model.training:
            self.loss_calls += 1
        return super().loss_fn(outputs, targets)


def blobs(n: int = 64, seed: int = 0) -> ArrayDataset:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    centres = np.array([[2, 0, 0, 0], [0, 2, 0, 0], [0, 0, 2, 0]], dtype=np.float32)
    x = centres[y] + rng.normal(0, 0.5, (n, 4)).astype(np.float32)
    return ArrayDataset(x, y)


def _same(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def _distance(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    return float(np.sqrt(sum(np.sum((x - y) ** 2) for x, y in zip(a, b, strict=True))))


def test_weights_are_float32_copies_in_state_dict_order() -> None:
    task = TinyNet(seed=0)
    weights = task.get_weights()
    names = list(task.model.state_dict())
    assert len(weights) == len(names) and "1.running_mean" in names
    assert all(w.dtype == np.float32 for w in weights)
    weights[0][:] = 123.0
    assert not np.any(task.get_weights()[0] == 123.0)


def test_weights_round_trip_including_read_only_arrays() -> None:
    source, target = TinyNet(seed=1), TinyNet(seed=2)
    weights = source.get_weights()
    for w in weights:
        w.setflags(write=False)
    target.set_weights(weights)
    assert _same(target.get_weights(), source.get_weights())
    # The int64 batch counter keeps its dtype in the model.
    assert target.model.state_dict()["1.num_batches_tracked"].dtype == torch.int64


def test_set_weights_rejects_wrong_count_and_shape() -> None:
    task = TinyNet()
    weights = task.get_weights()
    with pytest.raises(TaskError, match="expected 9 weight arrays"):
        task.set_weights(weights[:-1])
    weights[0] = np.zeros((2, 2), dtype=np.float32)
    with pytest.raises(TaskError, match=r"weight 0 \(0.weight\) must have shape \(8, 4\)"):
        task.set_weights(weights)


def test_initial_weights_depend_on_the_seed_only() -> None:
    state = torch.random.get_rng_state()
    assert _same(TinyNet(seed=3).get_weights(), TinyNet(seed=3).get_weights())
    assert not _same(TinyNet(seed=3).get_weights(), TinyNet(seed=4).get_weights())
    # Building a model leaves the global torch RNG where it was.
    assert torch.equal(state, torch.random.get_rng_state())


def test_training_is_deterministic_for_a_seed() -> None:
    data = blobs()
    settings = TrainSettings(epochs=2, batch_size=8, lr=0.1, momentum=0.9, seed=5)
    a, b, c = TinyNet(seed=0), TinyNet(seed=0), TinyNet(seed=0)
    metrics_a = a.train(data, settings)
    metrics_b = b.train(data, settings)
    c.train(data, TrainSettings(epochs=2, batch_size=8, lr=0.1, momentum=0.9, seed=6))
    assert metrics_a == metrics_b
    assert _same(a.get_weights(), b.get_weights())
    assert not _same(a.get_weights(), c.get_weights())


@pytest.mark.parametrize(("epochs", "steps"), [(0.5, 4), (1.0, 8), (1.5, 12), (0.01, 1)])
def test_fractional_epochs_run_that_share_of_batches(epochs: float, steps: int) -> None:
    task = TinyNet()
    task.train(blobs(n=64), TrainSettings(epochs=epochs, batch_size=8))
    assert task.loss_calls == steps


def test_last_partial_batch_is_used() -> None:
    task = TinyNet()
    task.train(blobs(n=20), TrainSettings(epochs=1, batch_size=8))
    assert task.loss_calls == 3


def test_training_lowers_the_loss_with_sgd_and_adam() -> None:
    data = blobs(n=128)
    for optimizer, lr in (("sgd", 0.1), ("adam", 0.01)):
        task = TinyNet(seed=0)
        before = task.evaluate(data)
        metrics = task.train(data, TrainSettings(epochs=10, optimizer=optimizer, lr=lr))
        after = task.evaluate(data)
        assert set(metrics) == {"loss", "local_steps"}
        assert after["loss"] < before["loss"]
        assert after["accuracy"] > 0.9


def test_proximal_term_keeps_weights_near_the_start() -> None:
    data = blobs()
    start = TinyNet(seed=0).get_weights()

    def drift(mu: float) -> float:
        task = TinyNet(seed=0)
        settings = TrainSettings(epochs=5, batch_size=8, lr=0.01)
        task.train(data, settings, gradient_terms=[ProximalTerm(mu)] if mu else ())
        # Only parameters feel the term; BatchNorm statistics move with the data anyway.
        names = list(task.model.state_dict())
        keep = [i for i, name in enumerate(names) if "running" not in name and "num_" not in name]
        now = task.get_weights()
        return _distance([now[i] for i in keep], [start[i] for i in keep])

    free, held = drift(0.0), drift(50.0)
    assert held < 0.1 * free


def test_gradient_terms_see_each_parameter_by_its_weights_index() -> None:
    data = blobs()
    task = TinyNet(seed=0)
    names = list(task.model.state_dict())
    seen: set[int] = set()

    class Freeze(GradientTerm):
        """Cancels the gradient of one parameter: it must not move."""

        def __init__(self, frozen: int) -> None:
            self.frozen = frozen

        def __call__(self, index: int, param: Any, start: Any) -> Any:
            seen.add(index)
            return -param.grad if index == self.frozen else None

    frozen = names.index(next(n for n in names if n.endswith("weight")))
    start = task.get_weights()
    task.train(data, TrainSettings(epochs=1, batch_size=8, lr=0.1), gradient_terms=[Freeze(frozen)])
    after = task.get_weights()
    np.testing.assert_array_equal(after[frozen], start[frozen])
    assert any(not np.array_equal(a, b) for a, b in zip(after, start, strict=True))
    trainable = {n for n, p in task.model.named_parameters() if p.requires_grad}
    assert seen == {i for i, n in enumerate(names) if n in trainable}  # buffers take none


def test_evaluate_reports_loss_and_accuracy_in_batches() -> None:
    task = TinyNet()
    task.eval_batch_size = 7  # type: ignore[misc]
    data = blobs(n=50)
    metrics = task.evaluate(data)
    task.eval_batch_size = 1000  # type: ignore[misc]
    whole = task.evaluate(data)
    assert set(metrics) == {"loss", "accuracy"}
    assert 0.0 <= metrics["accuracy"] <= 1.0
    assert metrics["accuracy"] == whole["accuracy"]
    assert metrics["loss"] == pytest.approx(whole["loss"], rel=1e-5)


def test_empty_data_is_an_error() -> None:
    empty = ArrayDataset(np.zeros((0, 4), dtype=np.float32), np.zeros(0, dtype=np.int64))
    with pytest.raises(TaskError, match="empty"):
        TinyNet().train(empty, TrainSettings())
    with pytest.raises(TaskError, match="empty"):
        TinyNet().evaluate(empty)


def test_model_artifact_is_the_module() -> None:
    task = TinyNet()
    artifact = task.model_artifact()
    assert artifact.flavor == "pytorch" and artifact.model is task.model


def test_thread_setting_comes_only_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch_adapter, "_threads_configured", False)
    monkeypatch.setenv(torch_adapter.THREADS_ENV, "many")
    with pytest.raises(TaskError, match="FEDPILOT_TORCH_THREADS"):
        TinyNet()
    monkeypatch.setattr(torch_adapter, "_threads_configured", False)
    monkeypatch.setenv(torch_adapter.THREADS_ENV, "2")
    TinyNet()
    assert torch.get_num_threads() == 2  # the autouse fixture restores the count
