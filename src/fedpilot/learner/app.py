"""fedpilot's learner: a Flower ClientApp that wraps a Task.

It speaks Flower's standard message convention, so it can join a plain Flower
ServerApp, and any ClientApp that speaks it can stand in for it.
"""

from __future__ import annotations

import functools

from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from fedpilot.learner.protocol import NUM_EXAMPLES, settings_from_config
from fedpilot.spec import FederationSpec
from fedpilot.tasks import build_task
from fedpilot.tasks._base import Task
from fedpilot.types import Config, Weights


def make_clientapp(spec: FederationSpec) -> ClientApp:
    """A ClientApp serving ``spec``'s Task; the learner's share of the data is chosen by
    ``context.node_config["partition-id"]`` (and checked against ``num-partitions``)."""
    app = ClientApp()
    spec_json = spec.model_dump_json()

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        task = _task(spec_json)
        data = task.learner_data(_partition(context, spec))
        task.set_weights(_arrays(msg))
        settings = settings_from_config(_config(msg))
        metrics = task.train(data.train, settings)
        reply = RecordDict(
            {
                "arrays": ArrayRecord(task.get_weights()),
                "metrics": MetricRecord({**metrics, NUM_EXAMPLES: len(data.train)}),
            }
        )
        return Message(reply, reply_to=msg)

    @app.evaluate()
    def evaluate(msg: Message, context: Context) -> Message:
        task = _task(spec_json)
        data = task.learner_data(_partition(context, spec))
        task.set_weights(_arrays(msg))
        test = data.test if data.test is not None and len(data.test) else data.train
        metrics = task.evaluate(test)
        reply = RecordDict({"metrics": MetricRecord({**metrics, NUM_EXAMPLES: len(test)})})
        return Message(reply, reply_to=msg)

    return app


def _arrays(msg: Message) -> Weights:
    record = msg.content.get("arrays")
    if not isinstance(record, ArrayRecord):
        raise ValueError('the instruction has no "arrays" ArrayRecord')
    return record.to_numpy_ndarrays()


def _config(msg: Message) -> Config:
    record = msg.content.get("config")
    if record is None:
        return {}
    if not isinstance(record, ConfigRecord):
        raise ValueError('the instruction\'s "config" is not a ConfigRecord')
    return {k: v for k, v in record.items() if isinstance(v, (bool, int, float, str))}


@functools.lru_cache(maxsize=4)
def _task(spec_json: str) -> Task:
    # One Task per process and spec: a process serving many learners builds the model
    # and the partition once.
    spec = FederationSpec.model_validate_json(spec_json)
    task: Task = build_task(spec.task, spec.data, spec.seed, spec.base_dir)
    return task


def _partition(context: Context, spec: FederationSpec) -> int:
    try:
        index = int(context.node_config["partition-id"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError("the learner needs an integer `partition-id` in its node config") from exc
    if not 0 <= index < spec.data.num_learners:
        raise ValueError(
            f"`partition-id` must be in [0, {spec.data.num_learners}), got partition-id={index}"
        )
    return index
