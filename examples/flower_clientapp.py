"""A plain Flower ClientApp (numpy softmax regression on its share of digits).

Nothing here knows about fedpilot: it follows Flower's message convention
("arrays" + "config" in, "arrays" + "metrics" with "num-examples" out) and reads its
partition from ``context.node_config``, as any Flower app run by a SuperNode does.
"""

from __future__ import annotations

import numpy as np
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from sklearn.datasets import load_digits

app = ClientApp()
NUM_FEATURES, NUM_CLASSES = 64, 10


def initial_weights() -> list[np.ndarray]:
    return [
        np.zeros((NUM_FEATURES, NUM_CLASSES), np.float32),
        np.zeros(NUM_CLASSES, np.float32),
    ]


def _partition(context: Context) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    order = np.random.default_rng(0).permutation(len(y))
    part = int(context.node_config["partition-id"])
    parts = int(context.node_config["num-partitions"])
    mine = np.array_split(order, parts)[part]
    cut = int(0.8 * len(mine))
    return x[mine[:cut]], y[mine[:cut]], x[mine[cut:]], y[mine[cut:]]


def _probabilities(w: np.ndarray, b: np.ndarray, x: np.ndarray) -> np.ndarray:
    z = x @ w + b
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


@app.train()
def train(msg: Message, context: Context) -> Message:
    w, b = msg.content["arrays"].to_numpy_ndarrays()
    lr = float(msg.content["config"].get("lr", 0.5))
    epochs = int(msg.content["config"].get("local-epochs", 5))
    x, y, _, _ = _partition(context)
    onehot = np.eye(NUM_CLASSES, dtype=np.float32)[y]
    for _ in range(epochs):
        p = _probabilities(w, b, x)
        grad = (p - onehot) / len(y)
        w = w - lr * (x.T @ grad)
        b = b - lr * grad.sum(axis=0)
    loss = float(-np.log(_probabilities(w, b, x)[np.arange(len(y)), y] + 1e-12).mean())
    content = RecordDict(
        {
            "arrays": ArrayRecord([w.astype(np.float32), b.astype(np.float32)]),
            "metrics": MetricRecord({"loss": loss, "num-examples": len(y)}),
        }
    )
    return Message(content, reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    w, b = msg.content["arrays"].to_numpy_ndarrays()
    _, _, x, y = _partition(context)
    p = _probabilities(w, b, x)
    metrics = {
        "loss": float(-np.log(p[np.arange(len(y)), y] + 1e-12).mean()),
        "accuracy": float((p.argmax(axis=1) == y).mean()),
        "num-examples": len(y),
    }
    return Message(RecordDict({"metrics": MetricRecord(metrics)}), reply_to=msg)
