"""The learner side: fedpilot's ClientApp and the instruction protocol.

``make_clientapp`` is imported lazily so that importing the protocol does not pull in Flower.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fedpilot.learner.protocol import SERVER_ROUND, settings_from_config, train_config
from fedpilot.types import NUM_EXAMPLES

if TYPE_CHECKING:
    from fedpilot.learner.app import make_clientapp


def __getattr__(name: str) -> Any:
    if name == "make_clientapp":
        from fedpilot.learner.app import make_clientapp

        return make_clientapp
    raise AttributeError(name)


__all__ = ["NUM_EXAMPLES", "SERVER_ROUND", "make_clientapp", "settings_from_config", "train_config"]
