"""A Flower ClientApp (softmax regression on digits) whose first ``fuzzers`` partitions
send a random bad reply to every train and evaluate message, drawn by :func:`corruption`
from ``fuzz-seed``, the round and the partition. With ``fuzz-seed`` = -1 they fail
instead: the federation of the honest learners alone.

Train replies: a wrong shape, dtype or number of arrays; NaN or inf; a huge magnitude;
a lying or malformed ``num-examples``; a missing or mistyped ``"arrays"`` or
``"metrics"`` record; a non-finite metric. Evaluate replies: a lying or malformed
``num-examples``, a share out of [0, 1], a non-finite metric, a missing or mistyped
``"metrics"`` record. Half of them also carry extra records (Flower's convention lets a
reply carry any), which change nothing.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from sklearn.datasets import load_digits

app = ClientApp()

TRAIN = (
    "shape",
    "dtype",
    "array-count",
    "non-finite",
    "magnitude",
    "examples-lie",
    "examples-malformed",
    "no-arrays",
    "arrays-mistyped",
    "no-metrics",
    "no-count",
    "metrics-mistyped",
    "metric-non-finite",
)
EVALUATE = (
    "examples-lie",
    "examples-malformed",
    "share-out-of-range",
    "metric-non-finite",
    "no-metrics",
    "metrics-mistyped",
)


def initial_weights() -> list[np.ndarray]:
    return [np.zeros((64, 10), np.float32), np.zeros(10, np.float32)]


def corruption(seed: int, round_: int, partition: int, kind: str) -> tuple[str, bool]:
    """(what is wrong, whether extra records come with it) for one reply."""
    rng = _rng(seed, round_, partition, kind)
    return str(rng.choice(TRAIN if kind == "train" else EVALUATE)), bool(rng.random() < 0.5)


def _rng(seed: int, round_: int, partition: int, kind: str) -> np.random.Generator:
    return np.random.default_rng([seed, round_, partition, 0 if kind == "train" else 1])


def _partition(context: Context) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(y))
    part = int(context.node_config["partition-id"])
    mine = np.array_split(order, int(context.node_config["num-partitions"]))[part]
    cut = int(0.8 * len(mine))
    x = (x / 16.0).astype(np.float32)
    return x[mine[:cut]], y[mine[:cut]], x[mine[cut:]], y[mine[cut:]]


def _proba(w: np.ndarray, b: np.ndarray, x: np.ndarray) -> np.ndarray:
    z = x @ w + b
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _fuzzer(msg: Message, context: Context) -> tuple[int, int, int] | None:
    """(seed, round, partition) when this learner fuzzes; raises for the honest-alone run."""
    part = int(context.node_config["partition-id"])
    if part >= int(context.run_config.get("fuzzers", 0)):
        return None
    seed = int(context.run_config.get("fuzz-seed", 0))
    if seed < 0:
        raise RuntimeError("this learner sits the run out")
    return seed, int(msg.content["config"]["server-round"]), part


@app.train()
def train(msg: Message, context: Context) -> Message:
    w, b = msg.content["arrays"].to_numpy_ndarrays()
    x, y, _, _ = _partition(context)
    onehot = np.eye(10, dtype=np.float32)[y]
    for _ in range(5):
        grad = (_proba(w, b, x) - onehot) / len(y)
        w, b = w - 0.5 * (x.T @ grad), b - 0.5 * grad.sum(axis=0)
    arrays = [w.astype(np.float32), b.astype(np.float32)]
    metrics: dict[str, Any] = {"loss": 1.0, "num-examples": len(y)}
    fuzz = _fuzzer(msg, context)
    if fuzz is None:
        content = RecordDict({"arrays": ArrayRecord(arrays), "metrics": MetricRecord(metrics)})
        return Message(content, reply_to=msg)
    what, extra = corruption(*fuzz, "train")
    rng = _rng(*fuzz, "train")
    records: dict[str, Any] = {"arrays": arrays, "metrics": metrics}
    _corrupt_train(what, records, rng)
    return Message(_content(records, extra, rng), reply_to=msg)


def _corrupt_train(what: str, records: dict[str, Any], rng: np.random.Generator) -> None:
    arrays: list[np.ndarray] = records["arrays"]
    metrics: dict[str, Any] = records["metrics"]
    i = int(rng.integers(len(arrays)))
    if what == "shape":
        arrays[i] = rng.standard_normal(tuple(rng.integers(1, 70, rng.integers(1, 4)))).astype(
            np.float32
        )
    elif what == "dtype":
        dtype = rng.choice(["float64", "float16", "int32", "int64", "uint8", "bool"])
        arrays[i] = arrays[i].astype(dtype)
    elif what == "array-count":
        if rng.random() < 0.5:
            del arrays[i]
        else:
            arrays.append(rng.standard_normal(int(rng.integers(1, 50))).astype(np.float32))
    elif what == "non-finite":
        flat = arrays[i].reshape(-1)
        flat[rng.integers(flat.size, size=int(rng.integers(1, 5)))] = rng.choice(
            [np.nan, np.inf, -np.inf]
        )
    elif what == "magnitude":
        scale = np.float32(10.0 ** rng.uniform(3, 30) * rng.choice([-1, 1]))
        arrays[i] = arrays[i] * scale if rng.random() < 0.5 else arrays[i] + scale
    elif what == "examples-lie":
        metrics["num-examples"] = int(10 ** rng.integers(6, 18))
    elif what == "examples-malformed":
        metrics["num-examples"] = [0, -7, 2.5, float("nan"), float("inf"), [3, 4]][
            int(rng.integers(6))
        ]
    elif what == "no-arrays":
        del records["arrays"]
    elif what == "arrays-mistyped":
        records["arrays"] = MetricRecord({"w": 1.0})
    elif what == "no-metrics":
        del records["metrics"]
    elif what == "no-count":
        del metrics["num-examples"]
    elif what == "metrics-mistyped":
        records["metrics"] = ConfigRecord({"num-examples": 10, "loss": "low"})
    elif what == "metric-non-finite":
        metrics["loss"] = float(rng.choice([np.nan, np.inf, -np.inf]))


def _content(records: dict[str, Any], extra: bool, rng: np.random.Generator) -> RecordDict:
    content: dict[str, Any] = {}
    for name, value in records.items():
        if isinstance(value, list):
            value = ArrayRecord(value)
        elif isinstance(value, dict):
            value = MetricRecord(value)
        content[name] = value
    if extra:
        content["junk"] = ArrayRecord([rng.standard_normal(int(rng.integers(1, 30)))])
        content["junk-config"] = ConfigRecord({"note": "ignore me", "n": 3})
        content["junk-metrics"] = MetricRecord({"accuracy": 7.0, "num-examples": 10**15})
    return RecordDict(content)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    w, b = msg.content["arrays"].to_numpy_ndarrays()
    _, _, x, y = _partition(context)
    p = _proba(w, b, x)
    metrics: dict[str, Any] = {
        "loss": float(-np.log(p[np.arange(len(y)), y] + 1e-12).mean()),
        "accuracy": float((p.argmax(axis=1) == y).mean()),
        "num-examples": len(y),
    }
    fuzz = _fuzzer(msg, context)
    if fuzz is None:
        return Message(RecordDict({"metrics": MetricRecord(metrics)}), reply_to=msg)
    what, extra = corruption(*fuzz, "evaluate")
    rng = _rng(*fuzz, "evaluate")
    records: dict[str, Any] = {"metrics": metrics}
    if what == "examples-lie":
        metrics.update({"num-examples": int(10 ** rng.integers(6, 18)), "accuracy": 1.0})
    elif what == "examples-malformed":
        metrics["num-examples"] = [0, -3, 2.5, float("nan")][int(rng.integers(4))]
    elif what == "share-out-of-range":
        metrics["accuracy"] = float(rng.choice([-0.5, 1.5, 100.0]))
    elif what == "metric-non-finite":
        metrics[str(rng.choice(["loss", "accuracy"]))] = float(rng.choice([np.nan, np.inf]))
    elif what == "no-metrics":
        del records["metrics"]
    elif what == "metrics-mistyped":
        records["metrics"] = ConfigRecord({"num-examples": 10**12, "accuracy": "1.0"})
    return Message(_content(records, extra, rng), reply_to=msg)
