"""The fixed set of reasons ``fedpilot_updates_rejected_total`` counts rejections by: a
label must not carry free text, or every distinct message would be a series of its own."""

from __future__ import annotations

import re

REJECTION_REASONS = (
    "num_examples",
    "non_finite",
    "shape",
    "norm_outlier",
    "missing_metric",
    "undecodable",
    "secure_aggregation",
    "other",
)
"""The values of ``fedpilot_updates_rejected_total``'s ``reason``."""

_REASON_PATTERNS = (
    ("undecodable", re.compile(r"^undecodable")),
    ("secure_aggregation", re.compile(r"^secure aggregation")),
    ("num_examples", re.compile(r"num-examples")),
    ("non_finite", re.compile(r"not finite|non-finite")),
    ("norm_outlier", re.compile(r"\bnorm\b")),
    ("shape", re.compile(r"\barrays?\b.*\b(shape|dtype|has \d+ arrays)|update has \d+ arrays")),
    ("missing_metric", re.compile(r"needs a positive metric")),
)


def rejection_reason(reason: str | None) -> str:
    """The fixed category of a validator's reason (a label must not carry free text: one
    series per distinct message would grow without bound)."""
    text = reason or ""
    for label, pattern in _REASON_PATTERNS:
        if pattern.search(text):
            return label
    return "other"


__all__ = ["REJECTION_REASONS", "rejection_reason"]
