"""A user's transform that keeps, in the server process, every training reply exactly as
the round is handed it from the fleet: named in a spec as ``wiretap:Wiretap`` with
``params: {folder: DIR}``. The round calls ``on_reply`` on each training reply first,
before anything reads it, so over the Flower fleet this is what the ServerApp took off
the wire (the reply Message's arrays, metrics and learner state, as a fedpilot Reply).

Pass-through on both halves; it writes ``DIR/<round>-<learner>.npz`` holding the
reply's ``weights/<i>``, ``extras/<name>/<i>`` and ``state/<key>/<i>`` arrays and its
``metrics`` (a JSON string).

Over Flower it also keeps every Message of every exchange (keys, shares, training,
unmasking, evaluation) as the ServerApp pulls it from the SuperLink: the Grid's
``pull_messages`` is wrapped in the ServerApp process to write each pulled Message's
arrays, record by record, to ``DIR/wire/<n>-<message type>.npz`` before handing it on.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import Message
from flwr.serverapp import Grid

from fedpilot.transforms import UpdateTransform
from fedpilot.types import Reply, RoundContext, Weights


class Wiretap(UpdateTransform):
    name = "wiretap"

    def __init__(self, folder: str) -> None:
        self.folder = Path(folder)
        _tap_pulled_messages(self.folder / "wire")

    def on_reply(self, reply: Reply, *, reference: Weights, ctx: RoundContext) -> Reply:
        arrays: dict[str, Any] = {f"weights/{i}": w for i, w in enumerate(reply.weights)}
        for kind, named in (("extras", reply.extras), ("state", reply.state or {})):
            for key, values in named.items():
                arrays.update({f"{kind}/{key}/{i}": v for i, v in enumerate(values)})
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{ctx.round}-{reply.learner}.npz"
        np.savez(path, metrics=np.array(json.dumps(reply.metrics)), **arrays)
        return reply


def _tap_pulled_messages(folder: Path) -> None:
    """Wrap ``pull_messages`` of every Grid class loaded (in the ServerApp process: the
    one its grid is), once."""
    pending = [Grid]
    while pending:
        cls = pending.pop()
        pending += cls.__subclasses__()
        pull = cls.__dict__.get("pull_messages")
        if pull is None or getattr(pull, "__isabstractmethod__", False) or hasattr(pull, "tap"):
            continue

        def pulled(self: Any, message_ids: Any, _pull: Any = pull) -> list[Message]:
            messages = list(_pull(self, message_ids))
            for message in messages:
                _keep(folder, message)
            return messages

        pulled.tap = True  # type: ignore[attr-defined]
        cls.pull_messages = pulled  # type: ignore[method-assign]


def _keep(folder: Path, message: Message) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, Any] = {}
    if not message.has_error():
        for name, record in message.content.array_records.items():
            arrays.update({f"{name}/{i}": a for i, a in enumerate(record.to_numpy_ndarrays())})
    count = len(list(folder.iterdir()))
    kind = message.metadata.message_type.replace("/", "_")
    np.savez(folder / f"{count:05d}-{kind}.npz", **arrays)


def wire(folder: Path) -> list[tuple[str, dict[str, Any]]]:
    """What the grid tap wrote, in pull order: (message type, array name → array)."""
    out = []
    for path in sorted((folder / "wire").glob("*.npz")):
        kind = path.stem.split("-", 1)[1]
        with np.load(path) as data:
            out.append((kind, {k: data[k] for k in data.files}))
    return out


def tapped(folder: Path) -> dict[tuple[int, str], dict[str, Any]]:
    """What a Wiretap wrote: (round, learner) → array name → array (and ``metrics``)."""
    out: dict[tuple[int, str], dict[str, Any]] = {}
    for path in sorted(folder.glob("*.npz")):
        round_, _, learner = path.stem.partition("-")
        with np.load(path) as data:
            record: dict[str, Any] = {k: data[k] for k in data.files if k != "metrics"}
            record["metrics"] = json.loads(str(data["metrics"]))
        out[int(round_), learner] = record
    return out
