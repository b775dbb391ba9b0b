"""The test ClientApp (:mod:`testapps`) with a round whose learners hold their training
until a file appears: a stalled round that the test ends once it saw what it waits for.

``context.run_config``: ``hold-round`` (0: none) and ``hold-until`` (the file's path).
"""

from __future__ import annotations

import time
from pathlib import Path

import testapps
from flwr.app import Context, Message
from flwr.clientapp import ClientApp

app = ClientApp()
initial_weights = testapps.initial_weights


@app.train()
def train(msg: Message, context: Context) -> Message:
    round_ = int(msg.content["config"]["server-round"])
    if round_ == int(context.run_config.get("hold-round", 0)):
        release = Path(str(context.run_config["hold-until"]))
        give_up = time.monotonic() + 120  # a test that died must not hang its learners
        while not release.exists() and time.monotonic() < give_up:
            time.sleep(0.05)
    return testapps.train(msg, context)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    return testapps.evaluate(msg, context)
