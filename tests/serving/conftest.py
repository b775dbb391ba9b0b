"""Registered digits models in a real MLflow store on disk, and real `fedpilot serve`
processes in front of them.

The store is made with MLflow's public API only: a digits-mlp Task trained briefly,
logged with ``mlflow.pytorch.log_model`` (signature and input example), registered, with
aliases. This is the one place that knows how a served model gets into the registry.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import queue
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from fedpilot.tasks._base import TrainSettings
from fedpilot.tasks.builtin import DigitsMLP, DigitsSGD

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

URL = re.compile(r"on (http://\S+) ")


@dataclass
class DigitsRegistry:
    """A store with two logged digits models; :meth:`register` makes a registered model
    of them (versions 1 and 2) under any name, so tests that move aliases keep apart."""

    uri: str
    tasks: list[DigitsMLP]
    model_uris: list[str]
    x_test: np.ndarray
    y_test: np.ndarray
    unsigned_uri: str
    sgd: DigitsSGD
    """An sklearn Task, registered as ``digits-sgd`` version 1 (its pyfunc answers labels)."""
    registered: set[str] = field(default_factory=set)

    def client(self) -> Any:
        from mlflow import MlflowClient

        return MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)

    def register(self, name: str, *, sources: list[str] | None = None, **aliases: int) -> None:
        """Register versions 1 and 2 of ``name`` (or one version a source) and point
        ``aliases`` (alias=version) at them."""
        import mlflow

        from fedpilot.tracking import _mlflow_utils as mu

        # register_model finds the logged model through the process-wide tracking URI.
        with mu.use_tracking_uri(self.uri):
            for uri in self.model_uris if sources is None else sources:
                mlflow.register_model(uri, name, tags={"fedpilot.test": "lineage"})
        client = self.client()
        for alias, version in aliases.items():
            client.set_registered_model_alias(name, alias, str(version))
        self.registered.add(name)

    def labels(self, version: int, x: np.ndarray) -> np.ndarray:
        """What version ``version``'s Task predicts for ``x``."""
        model = self.tasks[version - 1].model
        model.eval()
        with torch.no_grad():
            return model(torch.from_numpy(x)).argmax(dim=1).numpy()


def _trained(seed: int, epochs: float) -> DigitsMLP:
    task = DigitsMLP(seed=seed)
    task.train(task.pooled_train_data(), TrainSettings(epochs=epochs, lr=0.1, momentum=0.9))
    return task


@pytest.fixture(scope="session")
def digits_registry(tmp_path_factory: pytest.TempPathFactory) -> DigitsRegistry:
    import mlflow
    from mlflow.models import infer_signature

    from fedpilot.tracking import _mlflow_utils as mu

    root = tmp_path_factory.mktemp("serving-store")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    mu.prepare_store(uri)
    # Two versions that disagree on some digits: version 2 trained far less.
    tasks = [_trained(seed=0, epochs=3), _trained(seed=1, epochs=0.2)]
    test = tasks[0].central_test_data()
    assert test is not None
    x_test = np.ascontiguousarray(test.x, dtype=np.float32)
    model_uris = []
    with mu.use_tracking_uri(uri):
        experiment = mlflow.create_experiment(
            "serving-tests", artifact_location=mu.artifact_location(uri, "serving-tests")
        )
        with mlflow.start_run(experiment_id=experiment):
            for task in tasks:
                with torch.no_grad():
                    scores = task.model(torch.from_numpy(x_test[:5])).numpy()
                info = mlflow.pytorch.log_model(
                    task.model,
                    name="model",
                    signature=infer_signature(x_test[:5], scores),
                    input_example=x_test[:2],
                    serialization_format="pickle",
                )
                model_uris.append(info.model_uri)
            unsigned = mlflow.pytorch.log_model(
                tasks[0].model, name="unsigned", serialization_format="pickle"
            )
            sgd = DigitsSGD(seed=0)
            sgd.train(sgd.pooled_train_data(), TrainSettings(epochs=3))
            estimator = sgd.model_artifact().model
            sgd_info = mlflow.sklearn.log_model(
                estimator,
                name="sgd",
                signature=infer_signature(x_test[:5], estimator.predict(x_test[:5])),
                input_example=x_test[:2],
                serialization_format="skops",
            )
    registry = DigitsRegistry(
        uri=uri,
        tasks=tasks,
        model_uris=model_uris,
        x_test=x_test,
        y_test=np.asarray(test.y),
        unsigned_uri=unsigned.model_uri,
        sgd=sgd,
    )
    registry.register("digits", champion=1, challenger=2)
    registry.register("digits-sgd", sources=[sgd_info.model_uri], champion=1)
    return registry


@dataclass
class Server:
    """A running `fedpilot serve`: its base URL and its stderr so far."""

    url: str
    process: subprocess.Popen[str]
    log: Path

    def stderr(self) -> str:
        return self.log.read_text()


def serve_command(uri: str, *args: str) -> list[str]:
    """`fedpilot serve ARGS --tracking-uri URI` (no URI: the default store)."""
    store = ["--tracking-uri", uri] if uri else []
    return [sys.executable, "-m", "fedpilot", "serve", *args, *store]


@pytest.fixture
def start_server(
    digits_registry: DigitsRegistry, tmp_path: Path
) -> Iterator[Callable[..., Server]]:
    """Start `fedpilot serve ARGS --port 0` on loopback (against the digits store, or
    ``uri``; "" for none); stopped at the test's end."""
    numbers = itertools.count()
    with contextlib.ExitStack() as stack:

        def start(*args: str, uri: str | None = None) -> Server:
            log = tmp_path / f"serve-{next(numbers)}.log"
            store = digits_registry.uri if uri is None else uri
            return stack.enter_context(_running(store, args, log))

        yield start


@contextlib.contextmanager
def _running(uri: str, args: tuple[str, ...], log: Path) -> Iterator[Server]:
    with log.open("w") as err:
        process = subprocess.Popen(
            serve_command(uri, *args, "--host", "127.0.0.1", "--port", "0"),
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
    lines: queue.Queue[str] = queue.Queue()
    assert process.stdout is not None
    stdout = process.stdout
    threading.Thread(target=lambda: [lines.put(line) for line in stdout], daemon=True).start()
    try:
        try:
            line = lines.get(timeout=120)
        except queue.Empty:
            line = ""
        match = URL.search(line)
        if match is None:
            raise AssertionError(f"fedpilot serve did not start: {line!r}\n{log.read_text()}")
        yield Server(url=match.group(1), process=process, log=log)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def serve_once(digits_registry: DigitsRegistry, tmp_path: Path) -> Callable[..., Any]:
    """Run `fedpilot serve ARGS` to its end (for the ones that must not start)."""

    def run(*args: str, uri: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            serve_command(digits_registry.uri if uri is None else uri, *args),
            capture_output=True,
            text=True,
            timeout=300,
            cwd=tmp_path,
        )

    return run
