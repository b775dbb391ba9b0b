"""A user's transform that keeps, in the server process, every training reply exactly as
the round is handed it from the fleet: named in a spec as ``wiretap:Wiretap`` with
``params: {folder: DIR}``. The round calls ``on_reply`` on each training reply first,
before anything reads it, so over the Flower fleet this is what the ServerApp took off
the wire (the reply Message's arrays, metrics and learner state, as a fedpilot Reply).

Pass-through on both halves; it writes ``DIR/<round>-<learner>.npz`` holding the
reply's ``weights/<i>``, ``extras/<name>/<i>`` and ``state/<key>/<i>`` arrays and its
``metrics`` (a JSON string).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from fedpilot.transforms import UpdateTransform
from fedpilot.types import Reply, RoundContext, Weights


class Wiretap(UpdateTransform):
    name = "wiretap"

    def __init__(self, folder: str) -> None:
        self.folder = Path(folder)

    def on_reply(self, reply: Reply, *, reference: Weights, ctx: RoundContext) -> Reply:
        arrays: dict[str, Any] = {f"weights/{i}": w for i, w in enumerate(reply.weights)}
        for kind, named in (("extras", reply.extras), ("state", reply.state or {})):
            for key, values in named.items():
                arrays.update({f"{kind}/{key}/{i}": v for i, v in enumerate(values)})
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{ctx.round}-{reply.learner}.npz"
        np.savez(path, metrics=np.array(json.dumps(reply.metrics)), **arrays)
        return reply


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
