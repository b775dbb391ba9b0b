"""Flower ClientApps for tests: softmax regression on digits that misbehaves on demand.

``context.run_config`` picks the misbehaviour (a partition number, -1 = nobody):
``raise-partition`` raises, ``nan-partition`` returns NaNs, ``shape-partition`` returns a
wrong shape, ``zero-partition`` claims 0 examples, ``sleep-partition`` sleeps
``sleep-seconds``, ``die-partition`` kills its process, and ``sabotage-round`` makes
every learner return a destroyed model in that round.
"""

from __future__ import annotations

import os
import time

import numpy as np
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from sklearn.datasets import load_digits

app = ClientApp()


def initial_weights() -> list[np.ndarray]:
    return [np.zeros((64, 10), np.float32), np.zeros(10, np.float32)]


def _data(context: Context) -> tuple[np.ndarray, np.ndarray]:
    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(y))
    part = int(context.node_config["partition-id"])
    mine = np.array_split(order, int(context.node_config["num-partitions"]))[part]
    return (x[mine] / 16.0).astype(np.float32), y[mine]


def _proba(w: np.ndarray, b: np.ndarray, x: np.ndarray) -> np.ndarray:
    z = x @ w + b
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _flag(context: Context, key: str) -> int:
    return int(context.run_config.get(key, -1))


@app.train()
def train(msg: Message, context: Context) -> Message:
    part = int(context.node_config["partition-id"])
    round_ = int(msg.content["config"]["server-round"])
    if part == _flag(context, "raise-partition"):
        raise RuntimeError("boom")
    if part == _flag(context, "die-partition"):
        os._exit(3)
    if part == _flag(context, "sleep-partition"):
        time.sleep(float(context.run_config.get("sleep-seconds", 30)))
    w, b = msg.content["arrays"].to_numpy_ndarrays()
    x, y = _data(context)
    onehot = np.eye(10, dtype=np.float32)[y]
    for _ in range(5):
        grad = (_proba(w, b, x) - onehot) / len(y)
        w, b = w - 0.5 * (x.T @ grad), b - 0.5 * grad.sum(axis=0)
    w, b = w.astype(np.float32), b.astype(np.float32)
    if round_ == _flag(context, "sabotage-round"):
        w = -50.0 * np.abs(w) - 50.0 * np.abs(w).max()
        w[:, part % 10] = 50.0
    if part == _flag(context, "nan-partition"):
        w[0, 0] = np.nan
    if part == _flag(context, "shape-partition"):
        w = w[:10]
    n = 0 if part == _flag(context, "zero-partition") else len(y)
    # Count calls per learner in Flower's per-node state (kept across rounds).
    calls = context.state.get("calls")
    count = (int(calls["n"]) if isinstance(calls, MetricRecord) else 0) + 1
    context.state["calls"] = MetricRecord({"n": count})
    metrics = MetricRecord({"loss": 1.0, "calls": count, "num-examples": n})
    return Message(RecordDict({"arrays": ArrayRecord([w, b]), "metrics": metrics}), reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    w, b = msg.content["arrays"].to_numpy_ndarrays()
    x, y = _data(context)
    p = _proba(w, b, x)
    metrics = {
        "accuracy": float((p.argmax(axis=1) == y).mean()),
        "loss": float(-np.log(p[np.arange(len(y)), y] + 1e-12).mean()),
        "num-examples": len(y),
    }
    return Message(RecordDict({"metrics": MetricRecord(metrics)}), reply_to=msg)
