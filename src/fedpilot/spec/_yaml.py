"""Reading spec YAML within bounds: a spec is a small document, and a hostile or broken
one must be refused quickly and clearly, never expanded or parsed for minutes.

``yaml.safe_load`` is safe from code execution, not from size: an alias bomb (each level
naming the one below several times) loads in milliseconds as a graph of shared
references, and everything that copies it afterwards (``--set``, validation) expands it
exponentially. So a spec file has a size limit, and the loaded document is copied into
plain data with a bound on its nodes counted as expanded (aliases included) and on its
depth. The same copy refuses non-finite numbers, which no spec field accepts.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import yaml

from fedpilot.errors import SpecError

MAX_SPEC_BYTES = 256 * 1024
"""A spec file's largest size; real specs are a few KB."""
MAX_NODES = 100_000
"""Most values (mappings, lists and scalars, with every alias expanded) in a spec."""
MAX_DEPTH = 64
"""Deepest nesting of mappings and lists in a spec."""

# libyaml is ~5x faster, and its composer bounds nesting itself (PyYAML's recursion does not).
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_spec_file(path: Path) -> Any:
    """The YAML document in ``path`` as plain data (see :func:`plain`).

    Raises:
        SpecError: unreadable, too large, not UTF-8, not YAML, or beyond the bounds.
    """
    try:
        with path.open("rb") as file:
            data = file.read(MAX_SPEC_BYTES + 1)
    except OSError as exc:
        raise SpecError(f"cannot read spec file {str(path)!r}: {exc.strerror}") from exc
    if len(data) > MAX_SPEC_BYTES:
        raise SpecError(
            f"spec file {str(path)!r} is larger than {MAX_SPEC_BYTES // 1024} KiB; "
            "a spec names its data and code, it does not hold them"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(f"spec file {str(path)!r} is not UTF-8 text: {exc.reason}") from None
    return plain(parse_yaml(text, f"spec file {str(path)!r}"), "")


def parse_yaml(text: str, what: str) -> Any:
    """``text`` parsed as YAML (safe tags only); errors name ``what``."""
    try:
        return yaml.load(text, Loader=_LOADER)
    # PyYAML raises ValueError for a malformed date or float, or an int of more than
    # 4300 digits, and RecursionError for deep nesting in its pure-Python composer.
    except (yaml.YAMLError, ValueError, RecursionError) as exc:
        detail = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise SpecError(f"{what} is not valid YAML: {detail}") from None


def plain(value: Any, where: str) -> Any:
    """A copy of loaded YAML as JSON-like data: mappings with string keys, lists and
    scalars (dates and the like become strings). ``where`` is the dotted path of
    ``value`` in the spec, for messages.

    Raises:
        SpecError: more than :data:`MAX_NODES` values with aliases expanded, nesting
            deeper than :data:`MAX_DEPTH`, or a NaN or infinite number (named by path).
    """
    budget = [MAX_NODES]
    return _copy(value, where, 0, budget)


def _copy(value: Any, where: str, depth: int, budget: list[int]) -> Any:
    budget[0] -= 1
    if budget[0] < 0:
        raise SpecError(
            f"the spec has more than {MAX_NODES} values (YAML aliases counted as "
            f"expanded), the last under `{_head(where)}`; a spec this large is refused",
            field=_head(where) or None,
        )
    if depth > MAX_DEPTH:
        raise SpecError(
            f"the spec is nested more than {MAX_DEPTH} levels deep under `{_head(where)}`",
            field=_head(where),
        )
    if isinstance(value, dict):
        return {
            _key(k): _copy(v, _join(where, _key(k)), depth + 1, budget) for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_copy(v, _join(where, str(i)), depth + 1, budget) for i, v in enumerate(value)]
    if isinstance(value, float) and not math.isfinite(value):
        name = where.rsplit(".", 1)[-1] or "value"
        raise SpecError(
            f"`{where}` must be a finite number, got {name}={value}", field=where or None
        )
    if value is None or isinstance(value, str | int | float):  # bool is an int
        return value
    return str(value)  # a date, timestamp, bytes or set: as the user wrote it, roughly


def _key(key: Any) -> str:
    # What JSON makes of a key, as the spec's earlier json round trip did.
    if isinstance(key, str):
        return key
    if key is None or isinstance(key, bool):
        return {None: "null", True: "true", False: "false"}[key]
    return str(key)


def _head(where: str) -> str:
    """The first levels of a long path: enough to find it in the file."""
    return ".".join(where.split(".")[:3])


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key
