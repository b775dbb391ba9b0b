"""Reading what a run directory holds, leniently: a damaged file counts as absent, and a
value of the wrong type as missing. `fedpilot runs` shows whatever is left, never a
traceback."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

# Each reader takes a damaged file as absent. ValueError covers bytes that are not
# UTF-8 and JSON that is not JSON; RecursionError, a document nested too deep.


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def read_text(path: Path) -> str | None:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except (OSError, ValueError):
        return None
    return text or None


def first_str(*values: object) -> str | None:
    return next((v for v in values if isinstance(v, str) and v), None)


def first_int(*values: object) -> int | None:
    for value in values:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and math.isfinite(value):
            return int(value)
    return None


def as_number(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:  # an integer beyond a float's range
            return None
    return None


def as_count(value: object) -> int:
    if isinstance(value, list | dict):
        return len(value)
    return first_int(value) or 0


def as_metrics(value: object) -> dict[str, float]:
    if not isinstance(value, dict):
        return {}
    numbers = {str(k): as_number(v) for k, v in value.items()}
    return {k: v for k, v in numbers.items() if v is not None}


def as_time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    # fedpilot writes UTC; read a naive timestamp as UTC too.
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


__all__ = [
    "as_count",
    "as_metrics",
    "as_number",
    "as_time",
    "first_int",
    "first_str",
    "read_json",
    "read_text",
    "read_yaml",
]
