"""A trivial Flower ClientApp shared by both engines in ``sim_overhead.py`` workload (a).

The ClientApp does almost no work: it adds a small deterministic delta to every array it
receives and replies in Flower's standard convention (``"arrays"`` ArrayRecord plus a
``"metrics"`` MetricRecord with ``"num-examples"``). Whatever an engine spends beyond that
is the engine's own overhead: scheduling, (de)serialization, message passing, aggregation.

The model size defaults to 100,000 float32 parameters; the environment variable
``FEDPILOT_BENCH_PARAMS`` changes it (read by :func:`initial_weights`, which only the
server side calls, so learners adapt to whatever arrays they are sent).
"""

from __future__ import annotations

import os

import numpy as np
import numpy.typing as npt
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

PARAMS_ENV = "FEDPILOT_BENCH_PARAMS"
DEFAULT_PARAMS = 100_000

app = ClientApp()


def initial_weights() -> list[npt.NDArray[np.float32]]:
    """The global model's starting arrays: a weight matrix, a bias, a small head.

    With the default size the shapes are (256, 384), (256,) and (10, 144): 100,000
    float32 parameters (400 kB).
    """
    total = int(os.environ.get(PARAMS_ENV, DEFAULT_PARAMS))
    head = min(1440, max(total // 10, 1))
    bias = min(256, max((total - head) // 2, 1))
    body = max(total - head - bias, 1)
    rng = np.random.default_rng(0)
    return [
        rng.standard_normal(body, dtype=np.float32).reshape(_matrix_shape(body)),
        np.zeros(bias, dtype=np.float32),
        rng.standard_normal(head, dtype=np.float32).reshape(_matrix_shape(head)),
    ]


def _matrix_shape(size: int) -> tuple[int, int]:
    # The most square (rows, cols) with rows * cols == size and rows <= cols.
    rows = int(np.sqrt(size))
    while size % rows:
        rows -= 1
    return rows, size // rows


def _partition_id(context: Context) -> int:
    # Flower's simulation engine sets partition-id in node_config; fall back to the node id.
    value = context.node_config.get("partition-id", context.node_id)
    return int(value)


def num_examples(partition_id: int) -> int:
    """The example count a learner claims: deterministic, varies across learners."""
    return 100 + (partition_id % 50)


@app.train()
def train(msg: Message, context: Context) -> Message:
    """Add ``1e-3 * (partition_id % 7 + 1)`` to every array and reply."""
    pid = _partition_id(context)
    arrays = msg.content.array_records["arrays"].to_numpy_ndarrays()
    delta = np.float32(1e-3 * (pid % 7 + 1))
    updated = [a + delta for a in arrays]
    content = RecordDict(
        {
            "arrays": ArrayRecord(updated),
            "metrics": MetricRecord({"num-examples": num_examples(pid), "loss": float(delta)}),
        }
    )
    return Message(content=content, reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    """Reply with a constant loss (only here so an engine that asks gets an answer)."""
    pid = _partition_id(context)
    content = RecordDict(
        {"metrics": MetricRecord({"num-examples": num_examples(pid), "loss": 0.0})}
    )
    return Message(content=content, reply_to=msg)
