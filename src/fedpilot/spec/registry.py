"""The ``registry`` section: the name a finished run registers its model under, and the
gate rules ``fedpilot models promote`` applies. Off by default (no ``model_name``)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator

from fedpilot.spec.sections import Section


class RegistrySpec(Section):
    """A completed run registers its final (last stable) model in the MLflow Model
    Registry as a new version of ``model_name``, aliased ``challenger``. Promotion to
    ``champion`` passes only if every gate holds:

    - ``tolerance``: ``metric`` ≥ the champion's − tolerance (``mode: min``: ≤ its +);
    - ``floor``: ``metric`` ≥ floor (``mode: min``: ≤, a ceiling);
    - ``worst_learner_floor``: the worst learner's ``metric`` on its own held-out data
      ≥ this floor (fairness; ``mode: min``: ≤).

    ``metric`` is the central one (the server-held test set; learners' mean when there is
    none); it and ``mode`` default to the guard's.
    """

    model_name: str | None = Field(
        default=None, description="Registered model name; unset: the run registers nothing."
    )
    metric: str | None = Field(default=None, description="Gate metric; default: guard.metric.")
    mode: Literal["max", "min"] | None = Field(
        default=None, description="max: higher is better; default: guard.mode."
    )
    tolerance: float = Field(
        default=0.0, ge=0, description="How much worse than the champion a promotion may be."
    )
    floor: float | None = Field(default=None, description="Absolute bound on the metric.")
    worst_learner_floor: float | None = Field(
        default=None, description="Bound on the worst learner's metric (fairness)."
    )

    @field_validator("model_name")
    @classmethod
    def _safe_name(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z0-9][\w.-]{0,99}", value):
            raise ValueError(
                "`registry.model_name` must be 1-100 letters, digits, '.', '_' or '-', "
                f"starting with a letter or digit, got model_name={value!r}"
            )
        return value


__all__ = ["RegistrySpec"]
