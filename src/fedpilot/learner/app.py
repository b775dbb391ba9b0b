"""fedpilot's learner as a Flower ClientApp: the wire adapter around :class:`TaskLearner`.

It speaks Flower's standard message convention (``fleet/_convention.py``), so it can join
a plain Flower ServerApp, and any ClientApp that speaks it can stand in for it. The
learner's state travels in the messages (``state/<key>`` records) rather than in
``context.state``: the server holds it, so it is checkpointed with the run and a
restarted learner machine continues where it left off.
"""

from __future__ import annotations

from pathlib import Path

from flwr.app import Context, Message
from flwr.clientapp import ClientApp

from fedpilot.fleet._convention import instruction_from_message, reply_content
from fedpilot.learner.core import TaskLearner
from fedpilot.learner.data import DataSource
from fedpilot.spec import FederationSpec
from fedpilot.transforms import answering


def make_clientapp(spec: FederationSpec) -> ClientApp:
    """A ClientApp serving ``spec``'s Task. The learner's data is its own file or
    directory when ``context.node_config`` names a ``data-path`` (read by the Task's
    ``load_data``), else partition ``partition-id``. It answers ``train``, ``evaluate``
    and ``query.<action>`` for every action the spec's transforms declare."""
    app = ClientApp()
    learner = TaskLearner(spec)

    def handle(msg: Message, context: Context) -> Message:
        instruction = instruction_from_message(msg)
        out = learner.run(data_source(context), instruction)
        content = reply_content(
            instruction.kind,
            weights=out.weights,
            metrics=out.metrics,
            num_examples=out.num_examples,
            extras=out.extras,
            state=out.state,
        )
        return Message(content, reply_to=msg)

    app.train()(handle)
    app.evaluate()(handle)
    for action in answering(learner.transforms):
        app.query(action)(handle)
    return app


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
