"""Update transforms: paired learner-side and server-side stages every update passes.

Built-ins (``transforms[].name``): ``sysmetrics``, ``label_flip``, ``proximal`` (param
``mu``) and ``scaffold``; or a user's ``package.module:Class``.
"""

# Imported so the built-ins register themselves in TRANSFORMS.
from fedpilot.transforms import label_flip, proximal, scaffold, sysmetrics  # noqa: F401
from fedpilot.transforms._base import (
    AggregationFailed,
    Exchange,
    GradientTerm,
    LearnerContext,
    LearnerOutput,
    LocalWork,
    UpdateTransform,
    Work,
)
from fedpilot.transforms._registry import TRANSFORMS
from fedpilot.transforms.chain import (
    answer_query,
    answering,
    build_transforms,
    query_action,
    run_chain,
    state_key,
    transforms_for,
)
from fedpilot.types import LearnerState

__all__ = [
    "TRANSFORMS",
    "AggregationFailed",
    "Exchange",
    "GradientTerm",
    "LearnerContext",
    "LearnerOutput",
    "LearnerState",
    "LocalWork",
    "UpdateTransform",
    "Work",
    "answer_query",
    "answering",
    "build_transforms",
    "query_action",
    "run_chain",
    "state_key",
    "transforms_for",
]
