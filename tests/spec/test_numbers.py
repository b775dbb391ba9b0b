"""Every number field of every spec model refuses a boolean, and every float field NaN
and infinities: the whole class, not the fields an issue happened to name."""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest
from pydantic import ValidationError

import fedpilot.spec  # noqa: F401 (defines every section)
from fedpilot.spec.sections import Section, _number_fields


def _models(cls: type[Section] = Section) -> Iterator[type[Section]]:
    for sub in cls.__subclasses__():
        yield sub
        yield from _models(sub)


FIELDS = sorted(
    {(model, name) for model in _models() for name in _number_fields(model)},
    key=lambda pair: (pair[0].__name__, pair[1]),
)


def test_the_spec_has_number_fields_to_check() -> None:
    assert len(FIELDS) > 50


@pytest.mark.parametrize(("model", "name"), FIELDS, ids=lambda v: getattr(v, "__name__", v))
def test_a_number_field_refuses_a_boolean(model: type[Section], name: str) -> None:
    with pytest.raises(ValidationError) as raised:
        model.model_validate({name: True})
    assert [e["type"] for e in raised.value.errors()] == ["bool_as_number"]


@pytest.mark.parametrize(("model", "name"), FIELDS, ids=lambda v: getattr(v, "__name__", v))
def test_a_number_field_refuses_nan_and_infinities(model: type[Section], name: str) -> None:
    for value in (math.inf, -math.inf, math.nan):
        with pytest.raises(ValidationError) as raised:
            model.model_validate({name: value})
        mine = [e for e in raised.value.errors() if e["loc"][:1] == (name,)]
        assert mine, raised.value.errors()
