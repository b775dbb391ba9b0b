"""Load a FederationSpec from YAML, apply ``--set`` overrides, and explain errors."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from fedpilot.errors import SpecError
from fedpilot.spec.model import FederationSpec


def load_spec(path: str | Path, overrides: Iterable[str] = ()) -> FederationSpec:
    """Read ``path``, apply ``key.sub=value`` overrides, validate.

    Raises:
        SpecError: the file is missing or unreadable, or a field is invalid; the
            message names the field, the value and what is allowed.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise SpecError(f"cannot read spec file {str(path)!r}: {exc.strerror}") from exc
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SpecError(f"spec file {str(path)!r} is not valid YAML: {exc}") from exc
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise SpecError(
            f"spec file {str(path)!r} must hold a mapping at the top, got {type(raw).__name__}"
        )
    raw = apply_overrides(raw, overrides)
    raw.setdefault("base_dir", str(path.resolve().parent))
    return validate_spec(raw)


def validate_spec(raw: Mapping[str, Any]) -> FederationSpec:
    try:
        return FederationSpec.model_validate(dict(raw))
    except ValidationError as exc:
        raise _explain(exc) from None


def apply_overrides(raw: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Set ``a.b.c=value`` paths in a nested mapping; values are parsed as YAML scalars."""
    result: dict[str, Any] = json.loads(json.dumps(raw, default=str))
    for item in overrides:
        key, sep, value_text = item.partition("=")
        if not sep or not key.strip():
            raise SpecError(f"--set expects key.sub=value, got {item!r}", field=None)
        parts = key.strip().split(".")
        node = result
        for depth, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                where = ".".join(parts[: depth + 1])
                raise SpecError(f"--set {key}: `{where}` is {child!r}, not a section", field=where)
            node = child
        node[parts[-1]] = yaml.safe_load(value_text)
    return result


def _explain(exc: ValidationError) -> SpecError:
    lines = []
    first_field = None
    for error in exc.errors():
        loc = _strip_union_tags(error["loc"])
        if not loc:  # a check across sections names its field in backticks
            named = re.search(r"`([\w.]+)`", error["msg"])
            loc = named.group(1) if named else ""
        first_field = first_field or loc
        kind = error["type"]
        if kind == "extra_forbidden":
            lines.append(f"`{loc}`: unknown key (not part of the spec)")
            continue
        msg = error["msg"].removeprefix("Value error, ")
        if kind == "missing":
            lines.append(f"`{loc}`: required field is missing")
            continue
        value = error.get("input")
        shown = json.dumps(value, default=str) if not isinstance(value, dict) else "{...}"
        if msg.startswith(f"`{loc}`"):  # the validator already named field and value
            lines.append(msg)
            continue
        lines.append(f"`{loc}`: {msg}, got {loc.rsplit('.', 1)[-1] or 'value'}={shown}")
    detail = "; ".join(lines)
    return SpecError(f"invalid spec: {detail}", field=first_field)


_UNION_FIELDS = {"partition", "strategy", "runtime", "selection"}


def _strip_union_tags(loc: tuple[int | str, ...]) -> str:
    # pydantic puts the chosen member's tag (e.g. 'dirichlet', 'fedprox') in the path of a
    # tagged union; users never wrote it, so leave it out of the field name.
    kept = [
        str(part)
        for i, part in enumerate(loc)
        if not (i > 0 and loc[i - 1] in _UNION_FIELDS and isinstance(part, str))
    ]
    return ".".join(kept)


def schema() -> dict[str, Any]:
    """JSON Schema of the spec (for editors and validation elsewhere)."""
    schema_: dict[str, Any] = FederationSpec.model_json_schema()
    return schema_
