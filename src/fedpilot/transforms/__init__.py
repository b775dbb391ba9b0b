"""Update transforms: paired learner-side and server-side stages every update passes."""

from fedpilot.transforms._base import (
    Exchange,
    GradientTerm,
    LearnerContext,
    LearnerOutput,
    LocalWork,
    UpdateTransform,
    Work,
)
from fedpilot.types import LearnerState

__all__ = [
    "Exchange",
    "GradientTerm",
    "LearnerContext",
    "LearnerOutput",
    "LearnerState",
    "LocalWork",
    "UpdateTransform",
    "Work",
]
