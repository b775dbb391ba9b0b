"""Load a FederationSpec from YAML, apply ``--set`` overrides, and explain errors."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, get_args

from pydantic import BaseModel, ValidationError

from fedpilot.errors import SpecError
from fedpilot.spec._yaml import parse_yaml, plain, read_spec_file
from fedpilot.spec.model import FederationSpec
from fedpilot.spec.sections import DataSpec, expand_partition


def load_spec(path: str | Path, overrides: Iterable[str] = ()) -> FederationSpec:
    """Read ``path``, apply ``key.sub=value`` overrides, validate.

    Raises:
        SpecError: the file is missing, unreadable or beyond the bounds of a spec
            (:mod:`._yaml`), or a field is invalid; the message names the field, the
            value and what is allowed.
    """
    path = Path(path)
    raw = read_spec_file(path)
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
    """Set ``a.b.c=value`` paths in a nested mapping; values are parsed as YAML scalars.

    Every field of the schema can be set, also inside a section the spec does not have.
    A section that is one of several kinds (``runtime`` by ``mode``, ``strategy`` and
    ``selection`` by ``name``, ``data.partition`` by ``kind``) gets its default kind when
    an override enters it and nothing names one; an override that changes the kind keeps
    only the keys the new kind has. The result does not depend on the overrides' order.

    Raises:
        SpecError: ``raw`` or a value beyond the bounds of a spec (:func:`._yaml.plain`),
            a malformed override, a path through a value that is not a section,
            or a key the section's kind does not have (the message names the kind that
            has it).
    """
    result: dict[str, Any] = plain(raw, "")  # a bounded copy: aliases expanded once
    before = {path: _tag_of(result, path, union) for path, union in _unions().items()}
    touched: dict[tuple[str, ...], list[str]] = {}
    for item in overrides:
        key, sep, value_text = item.partition("=")
        if not sep or not key.strip():
            raise SpecError(f"--set expects key.sub=value, got {item!r}", field=None)
        parts = tuple(key.strip().split("."))
        node = result
        for depth, part in enumerate(parts[:-1]):
            path = parts[: depth + 1]
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif path in _unions() and isinstance(child, str):
                try:
                    child = node[part] = _unions()[path].expand(child)
                except ValueError as exc:
                    where = ".".join(path)
                    raise SpecError(f"`{where}`: {exc}, got {child!r}", field=where) from None
            if not isinstance(child, dict):
                where = ".".join(path)
                raise SpecError(f"--set {key}: `{where}` is {child!r}, not a section", field=where)
            node = child
        node[parts[-1]] = plain(parse_yaml(value_text, f"--set {key}"), key.strip())
        for path in _unions():
            if parts[: len(path)] == path and len(parts) > len(path):
                touched.setdefault(path, []).append(parts[len(path)])
    for path, keys in touched.items():
        _settle_kind(result, path, _unions()[path], keys, before[path])
    return result


@dataclass(frozen=True)
class _Union:
    """A section that is one of several models, told apart by ``tag``."""

    tag: str
    default: str
    members: dict[str, frozenset[str]]
    """Each kind's tag value and the keys it has."""
    custom: frozenset[str] | None = None
    """The keys of the member a `package.module:Class` tag picks (``selection``)."""

    def keys(self, tag: str) -> frozenset[str] | None:
        if tag in self.members:
            return self.members[tag]
        return self.custom if self.custom is not None and ":" in tag else None

    def expand(self, shorthand: str) -> Any:
        return expand_partition(shorthand) if self.tag == "kind" else {self.tag: shorthand}


@cache
def _unions() -> dict[tuple[str, ...], _Union]:
    # Read off the models, so a new runtime, strategy or selector is settable at once.
    return {
        ("runtime",): _union_of(FederationSpec, "runtime", "mode"),
        ("strategy",): _union_of(FederationSpec, "strategy", "name"),
        ("selection",): _union_of(FederationSpec, "selection", "name"),
        ("data", "partition"): _union_of(DataSpec, "partition", "kind"),
    }


def _union_of(owner: type[BaseModel], field: str, tag: str) -> _Union:
    info = owner.model_fields[field]
    default = info.get_default(call_default_factory=True)
    members: dict[str, frozenset[str]] = {}
    custom = None
    for model in _models_in(info.annotation):
        values = get_args(model.model_fields[tag].annotation)
        if values:
            members[str(values[0])] = frozenset(model.model_fields)
        else:
            custom = frozenset(model.model_fields)
    return _Union(tag, str(getattr(default, tag)), members, custom)


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [model for arg in get_args(annotation) for model in _models_in(arg)]


def _tag_of(raw: dict[str, Any], path: tuple[str, ...], union: _Union) -> Any:
    node: Any = raw
    for part in path:
        node = node.get(part) if isinstance(node, dict) else None
    if isinstance(node, str):
        try:
            node = union.expand(node)
        except ValueError:
            return None  # a bad shorthand: the validator explains it
    return node.get(union.tag) if isinstance(node, dict) else None


def _settle_kind(
    raw: dict[str, Any], path: tuple[str, ...], union: _Union, keys: list[str], before: Any
) -> None:
    section: Any = raw
    for part in path:
        section = section.get(part) if isinstance(section, dict) else None
    if not isinstance(section, dict):
        return  # a later override replaced the section by a value: the validator explains
    tag = section.setdefault(union.tag, union.default)
    if not isinstance(tag, str):
        return  # the validator explains a tag of the wrong type
    accepted = union.keys(tag)
    if accepted is None:
        return  # an unknown kind: the validator lists the known ones
    if before is not None and tag != before:  # the kind changed: drop what it lacks
        for key in [k for k in section if k not in accepted and k not in keys]:
            del section[key]
    where = ".".join(path)
    for key in keys:
        if key in accepted:
            continue
        owners = [name for name, fields in union.members.items() if key in fields]
        hint = (
            f"; set {where}.{union.tag}={' or '.join(owners)}"
            if owners
            else f" (no {where} kind has it)"
        )
        raise SpecError(
            f"--set {where}.{key}: {where}.{union.tag}={tag} has no `{key}`{hint}",
            field=f"{where}.{key}",
        )


def _explain(exc: ValidationError) -> SpecError:
    lines = []
    first_field = None
    for error in exc.errors():
        loc = _strip_union_tags(error["loc"])
        value = error.get("input")
        field = error.get("ctx", {}).get("field")
        if field is not None:  # a section's own check names which of its fields
            loc = f"{loc}.{field}" if loc else field
            value = value.get(field) if isinstance(value, dict) else value
        elif not loc:  # a check across sections names its field in backticks
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
