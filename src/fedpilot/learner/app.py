"""fedpilot's learner as a Flower ClientApp: the wire adapter around :class:`TaskLearner`.

It speaks Flower's standard message convention, so it can join a plain Flower
ServerApp, and any ClientApp that speaks it can stand in for it.
"""

from __future__ import annotations

from pathlib import Path

from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from fedpilot.learner.core import LearnerState, TaskLearner
from fedpilot.learner.data import DataSource
from fedpilot.spec import FederationSpec
from fedpilot.types import NUM_EXAMPLES, Config, Weights


def make_clientapp(spec: FederationSpec) -> ClientApp:
    """A ClientApp serving ``spec``'s Task. The learner's data is its own file or
    directory when ``context.node_config`` names a ``data-path`` (read by the Task's
    ``load_data``), else partition ``partition-id``."""
    app = ClientApp()
    learner = TaskLearner(spec)

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        out = learner.train(
            data_source(context),
            _arrays(msg),
            _config(msg),
            extras=_extras(msg.content),
            state=_extras(context.state),
        )
        for name, arrays in (out.state or {}).items():
            # Kept on the node between rounds, as SCAFFOLD's c_i must be.
            context.state[name] = ArrayRecord(arrays)
        reply = RecordDict(
            {
                "arrays": ArrayRecord(out.weights),
                "metrics": MetricRecord({**out.metrics, NUM_EXAMPLES: out.num_examples}),
                **{name: ArrayRecord(arrays) for name, arrays in out.extras.items()},
            }
        )
        return Message(reply, reply_to=msg)

    @app.evaluate()
    def evaluate(msg: Message, context: Context) -> Message:
        out = learner.evaluate(data_source(context), _arrays(msg), _config(msg))
        metrics = MetricRecord({**out.metrics, NUM_EXAMPLES: out.num_examples})
        return Message(RecordDict({"metrics": metrics}), reply_to=msg)

    return app


def _arrays(msg: Message) -> Weights:
    record = msg.content.get("arrays")
    if not isinstance(record, ArrayRecord):
        raise ValueError('the instruction has no "arrays" ArrayRecord')
    return record.to_numpy_ndarrays()


def _extras(records: RecordDict) -> LearnerState:
    """Every ArrayRecord except the model's own ``"arrays"``."""
    return {
        name: record.to_numpy_ndarrays()
        for name, record in records.items()
        if name != "arrays" and isinstance(record, ArrayRecord)
    }


def _config(msg: Message) -> Config:
    record = msg.content.get("config")
    if record is None:
        return {}
    if not isinstance(record, ConfigRecord):
        raise ValueError('the instruction\'s "config" is not a ConfigRecord')
    return {k: v for k, v in record.items() if isinstance(v, (bool, int, float, str))}


def data_source(context: Context) -> DataSource:
    """Where this node's data is: ``data-path`` (a file or directory) or ``partition-id``."""
    path = context.node_config.get("data-path")
    if isinstance(path, str) and path:
        return Path(path)
    try:
        return int(context.node_config["partition-id"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(
            "the learner needs an integer `partition-id` or a `data-path` in its node config"
        ) from exc
