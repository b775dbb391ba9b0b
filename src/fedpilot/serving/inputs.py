"""A request's body as the model's input: parsed once, checked against its signature.

The checks are the cheap ones that keep a client's mistake a 4xx: strict JSON (no NaN,
no infinities), numbers only (no strings, no booleans), the signature's shape and a
dtype the values fit in. Everything is checked on the whole array at once; a row-by-row
walk happens only to name the culprit of an error already found.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

_FLOAT_KINDS = "fiu"
_INT_KINDS = "iu"


class BadInput(Exception):
    """A request the model cannot take; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class InputSpec:
    """The one tensor a model takes: dtype and shape (``-1`` where any size goes; the
    first axis is the batch)."""

    dtype: np.dtype[Any]
    shape: tuple[int, ...]

    def describe(self) -> str:
        dims = ", ".join("N" if d == -1 else str(d) for d in self.shape)
        return f"{self.dtype.name} array of shape ({dims})"

    def zeros(self) -> np.ndarray:
        """One example of zeros: what a freshly loaded model is tried on."""
        return np.zeros([1 if d == -1 else d for d in self.shape], dtype=self.dtype)

    def json_schema(self) -> dict[str, Any]:
        """The request body's JSON schema, for the OpenAPI page."""
        item: dict[str, Any] = {"type": "integer" if self.dtype.kind in _INT_KINDS else "number"}
        for size in reversed(self.shape):
            item = {"type": "array", "items": item}
            if size != -1:
                item |= {"minItems": size, "maxItems": size}
        return {
            "type": "object",
            "required": ["inputs"],
            "properties": {"inputs": item | {"description": f"a batch: {self.describe()}"}},
        }

    def parse(self, body: bytes, *, max_rows: int) -> np.ndarray:
        """The batch in ``body`` (``{"inputs": [...]}``) as an array of this spec.

        Raises:
            BadInput: 400 for a body that is not JSON, 413 for more than ``max_rows``
                rows, 422 for anything else that does not fit the signature.
        """
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise BadInput(400, f"the body is not valid JSON: {exc}") from None
        if not isinstance(document, dict) or "inputs" not in document:
            raise BadInput(422, 'the body must be a JSON object {"inputs": [...]}')
        rows = document["inputs"]
        if not isinstance(rows, list) or not rows:
            raise BadInput(422, f"`inputs` must be a non-empty list of rows: {self.describe()}")
        try:
            array = np.asarray(rows)
        except ValueError:
            raise BadInput(422, self._shape_problem(rows)) from None
        kind = array.dtype.kind
        allowed = _INT_KINDS if self.dtype.kind in _INT_KINDS else _FLOAT_KINDS
        integers = self.dtype.kind in _INT_KINDS
        # numpy reads JSON's true/false as numbers; the walk runs only when they may be there.
        if kind not in allowed or (
            (b"true" in body or b"false" in body)
            and _first_non_number(rows, "inputs", integers=integers)[0] is not None
        ):
            raise BadInput(422, self._type_problem(rows))
        if array.ndim != len(self.shape) or any(
            want not in (-1, got) for want, got in zip(self.shape, array.shape, strict=True)
        ):
            raise BadInput(422, self._shape_problem(rows))
        if len(rows) > max_rows:
            raise BadInput(413, f"`inputs` has {len(rows)} rows; at most {max_rows} a request")
        with np.errstate(over="ignore"):
            typed = array.astype(self.dtype, copy=False)
        if typed.dtype.kind == "f" and not np.isfinite(typed).all():
            raise BadInput(422, f"`inputs` has values too large for {self.dtype.name}")
        if kind in _INT_KINDS and typed.dtype.kind in _INT_KINDS and (typed != array).any():
            raise BadInput(422, f"`inputs` has values out of {self.dtype.name}'s range")
        return typed

    # -- naming the culprit (error path only) -------------------------------------------

    def _shape_problem(self, rows: list[Any]) -> str:
        expected = f"`inputs` must be a {self.describe()}"
        path = _first_misfit(rows, self.shape[1:], "inputs")
        return f"{expected}; {path}" if path else expected

    def _type_problem(self, rows: list[Any]) -> str:
        wanted = "integers" if self.dtype.kind in _INT_KINDS else "numbers"
        path, value = _first_non_number(rows, "inputs", integers=wanted == "integers")
        found = f": {path} is {orjson.dumps(value).decode()[:40]}" if path else ""
        return f"`inputs` must hold {wanted} only ({self.describe()}){found}"


def _first_misfit(value: Any, shape: tuple[int, ...], path: str) -> str | None:
    """Where ``value`` (a list of items of ``shape``) first departs from that shape."""
    for i, item in enumerate(value):
        where = f"{path}[{i}]"
        if not shape:
            if isinstance(item, list | dict):
                return f"{where} is a nested value, not a number"
            continue
        if not isinstance(item, list):
            return f"{where} is not a list"
        if shape[0] != -1 and len(item) != shape[0]:
            return f"{where} has {len(item)} values, not {shape[0]}"
        found = _first_misfit(item, shape[1:], where)
        if found:
            return found
    return None


def _first_non_number(value: Any, path: str, *, integers: bool) -> tuple[str | None, Any]:
    if isinstance(value, list):
        for i, item in enumerate(value):
            found = _first_non_number(item, f"{path}[{i}]", integers=integers)
            if found[0]:
                return found
        return None, None
    ok = isinstance(value, int) if integers else isinstance(value, int | float)
    return (None, None) if ok and not isinstance(value, bool) else (path, value)
