"""A ClientApp that behaves as Flower's quickstart-numpy example does, unmodified: training
adds random noise to the arrays and reports one random scalar metric; evaluation reports
a random list-valued metric (``list[float]``) and no ``accuracy``."""

from __future__ import annotations

import numpy as np
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

app = ClientApp()


def initial_weights() -> list[np.ndarray]:
    return [np.zeros((3, 2), np.float64), np.zeros(2, np.float64)]


@app.train()
def train(msg: Message, context: Context) -> Message:
    arrays = msg.content["arrays"].to_numpy_ndarrays()
    noisy = [a + np.random.rand(*a.shape) for a in arrays]
    metrics = MetricRecord({"random_metric": float(np.random.rand()), "num-examples": 1})
    return Message(RecordDict({"arrays": ArrayRecord(noisy), "metrics": metrics}), reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    metrics = MetricRecord({"random_metric": np.random.rand(3).tolist(), "num-examples": 1})
    return Message(RecordDict({"metrics": metrics}), reply_to=msg)
