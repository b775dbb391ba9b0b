"""A Flower ClientApp (softmax regression on digits, Flower's message convention) whose
learner ``poison-partition`` misbehaves the way ``context.run_config["poison"]`` says:

- ``add``: its trained weights + 1e9;
- ``scale``: its trained weights x 50;
- ``count``: claims ``num-examples`` = 10**12 in its train reply;
- ``eval-count``: claims ``num-examples`` = 10**12 and ``accuracy`` 1.0 in its evaluate reply.
"""

from __future__ import annotations

import numpy as np
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from sklearn.datasets import load_digits

app = ClientApp()
HUGE = 10**12


def initial_weights() -> list[np.ndarray]:
    return [np.zeros((64, 10), np.float32), np.zeros(10, np.float32)]


def central_test() -> tuple[np.ndarray, np.ndarray]:
    """The last 20% of digits, which no learner trains on."""
    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(y))
    held = order[int(0.8 * len(y)) :]
    return (x[held] / 16.0).astype(np.float32), y[held]


def _partition(context: Context) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(y))[: int(0.8 * len(y))]
    part = int(context.node_config["partition-id"])
    mine = np.array_split(order, int(context.node_config["num-partitions"]))[part]
    cut = int(0.8 * len(mine))
    x = (x / 16.0).astype(np.float32)
    return x[mine[:cut]], y[mine[:cut]], x[mine[cut:]], y[mine[cut:]]


def proba(w: np.ndarray, b: np.ndarray, x: np.ndarray) -> np.ndarray:
    z = x @ w + b
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _poison(context: Context) -> str | None:
    part = int(context.node_config["partition-id"])
    if part != int(context.run_config.get("poison-partition", -1)):
        return None
    return str(context.run_config.get("poison", ""))


@app.train()
def train(msg: Message, context: Context) -> Message:
    w, b = msg.content["arrays"].to_numpy_ndarrays()
    x, y, _, _ = _partition(context)
    onehot = np.eye(10, dtype=np.float32)[y]
    for _ in range(5):
        grad = (proba(w, b, x) - onehot) / len(y)
        w, b = w - 0.5 * (x.T @ grad), b - 0.5 * grad.sum(axis=0)
    w, b = w.astype(np.float32), b.astype(np.float32)
    n = len(y)
    poison = _poison(context)
    if poison == "add":
        w, b = w + np.float32(1e9), b + np.float32(1e9)
    elif poison == "scale":
        w, b = w * np.float32(50), b * np.float32(50)
    elif poison == "count":
        n = HUGE
    # local_steps: FedNova can run this app too (one full-batch step per epoch).
    metrics = MetricRecord({"loss": 1.0, "local_steps": 5, "num-examples": n})
    return Message(RecordDict({"arrays": ArrayRecord([w, b]), "metrics": metrics}), reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    w, b = msg.content["arrays"].to_numpy_ndarrays()
    _, _, x, y = _partition(context)
    p = proba(w, b, x)
    accuracy, n = float((p.argmax(axis=1) == y).mean()), len(y)
    if _poison(context) == "eval-count":
        accuracy, n = 1.0, HUGE
    loss = float(-np.log(p[np.arange(len(y)), y] + 1e-12).mean())
    metrics = MetricRecord({"loss": loss, "accuracy": accuracy, "num-examples": n})
    return Message(RecordDict({"metrics": metrics}), reply_to=msg)
