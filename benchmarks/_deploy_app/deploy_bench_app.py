"""The federation both engines run in benchmarks/deploy_round_overhead.py: a small model
and trivial local work (add one), so a round's time is the engine's own overhead."""

from __future__ import annotations

import json
import time

import numpy as np
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

SHAPES = [(100, 100), (100,)]

client_app = ClientApp()
server_app = ServerApp()


def initial_weights() -> list[np.ndarray]:
    return [np.zeros(shape, np.float32) for shape in SHAPES]


@client_app.train()
def train(msg: Message, context: Context) -> Message:
    arrays = msg.content["arrays"].to_numpy_ndarrays()
    reply = RecordDict(
        {
            "arrays": ArrayRecord([a + 1.0 for a in arrays]),
            "metrics": MetricRecord({"num-examples": 10, "loss": 0.0}),
        }
    )
    return Message(reply, reply_to=msg)


@server_app.main()
def main(grid: Grid, context: Context) -> None:
    """Plain Flower: FedAvg.start, timing each round through its evaluate_fn hook."""
    rounds = int(context.run_config["rounds"])
    while len(list(grid.get_node_ids())) < 3:
        time.sleep(0.05)
    stamps: list[float] = []

    def stamp(server_round: int, arrays: ArrayRecord) -> MetricRecord:
        stamps.append(time.time())
        return MetricRecord({"round": server_round})

    strategy = FedAvg(fraction_train=1.0, fraction_evaluate=0.0, min_available_nodes=3)
    strategy.start(
        grid=grid,
        initial_arrays=ArrayRecord(initial_weights()),
        num_rounds=rounds,
        evaluate_fn=stamp,
    )
    with open(str(context.run_config["timings-file"]), "w") as out:
        json.dump({"round_ends": stamps}, out)
