"""The ``selection`` spec section and ``build_selector``."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
from pydantic import Field, ValidationError

from fedpilot.errors import ResumeError, SpecError
from fedpilot.orchestrator.checkpoint import encode_state
from fedpilot.selection import (
    SELECTORS,
    AvailableSelector,
    OortSelector,
    PowerOfChoiceSelector,
    RandomSelector,
    UcbSelector,
    build_selector,
)
from fedpilot.spec.sections import Section
from fedpilot.spec.selection import (
    BUILTIN_SELECTORS,
    AvailableSelection,
    CustomSelection,
    OortSelection,
    PowerOfChoiceSelection,
    RandomSelection,
    SelectionSpec,
    UcbSelection,
)


class Holder(Section):
    """Stands in for FederationSpec, which holds the section the same way."""

    selection: SelectionSpec = Field(default_factory=RandomSelection)


def parse(value: Any) -> Any:
    return Holder.model_validate({"selection": value}).selection


def error_text(value: Any) -> str:
    with pytest.raises(ValidationError) as info:
        parse(value)
    return str(info.value)


def test_default_is_random() -> None:
    assert Holder().selection == RandomSelection()
    assert isinstance(build_selector(Holder().selection), RandomSelector)


@pytest.mark.parametrize(
    ("raw", "section", "selector"),
    [
        ({"name": "random"}, RandomSelection, RandomSelector),
        ({"name": "available"}, AvailableSelection, AvailableSelector),
        ({"name": "power_of_choice", "factor": 3}, PowerOfChoiceSelection, PowerOfChoiceSelector),
        ({"name": "oort", "alpha": 3, "cutoff": 1}, OortSelection, OortSelector),
        ({"name": "ucb", "c": 0.5}, UcbSelection, UcbSelector),
        ("oort", OortSelection, OortSelector),  # shorthand: the name alone
    ],
)
def test_names_pick_their_section_and_selector(
    raw: Any, section: type[Section], selector: type[object]
) -> None:
    spec = parse(raw)
    assert type(spec) is section
    built = build_selector(spec)
    assert type(built) is selector
    for key, value in (raw if isinstance(raw, dict) else {}).items():
        if key != "name":
            assert getattr(built, key) == value


def test_registry_and_spec_list_the_same_names() -> None:
    assert set(SELECTORS) == set(BUILTIN_SELECTORS)


def test_built_in_defaults_match_the_sections() -> None:
    oort = build_selector(OortSelection())
    assert (oort.exploration, oort.exploration_decay, oort.exploration_min) == (0.9, 0.98, 0.3)
    assert (oort.alpha, oort.pacer_quantile, oort.cutoff) == (2.0, 0.3, 0.95)
    assert encode_state(OortSelector().state_dict())[0] == encode_state(oort.state_dict())[0]


def test_unknown_bare_name_names_the_field_and_the_allowed_values() -> None:
    text = error_text({"name": "fedcs"})
    assert "`selection.name`" in text and "'fedcs'" in text
    for name in BUILTIN_SELECTORS:
        assert name in text
    assert "package.module:Class" in text


def test_bad_shapes_and_keys_are_refused() -> None:
    assert "`selection` must be a selector name" in error_text(3)
    assert "Extra inputs" in error_text({"name": "oort", "alfa": 1})
    assert "name" in error_text({"factor": 2})  # no name at all
    assert "greater than or equal to 1" in error_text({"name": "power_of_choice", "factor": 0.5})
    assert "exploration_min" in error_text({"name": "oort", "exploration": 0.1})
    assert "greater than or equal to 0" in error_text({"name": "ucb", "c": -1})


def test_every_field_is_described() -> None:
    for section in (
        RandomSelection,
        AvailableSelection,
        PowerOfChoiceSelection,
        OortSelection,
        UcbSelection,
        CustomSelection,
    ):
        for name, field in section.model_fields.items():
            assert field.description, f"{section.__name__}.{name}"


def test_json_schema_is_available() -> None:
    schema = Holder.model_json_schema()
    assert "OortSelection" in schema["$defs"]


# ---------------------------------------------------------------- custom selectors

USER_MODULE = """
    from fedpilot.selection import AvailableSelector, Selector

    class Mine(AvailableSelector):
        def __init__(self, boost: int = 1) -> None:
            super().__init__()
            self.boost = boost

    class Abstract(Selector):
        pass

    not_a_class = 3
"""


@pytest.fixture
def user_dir(tmp_path: Path) -> Path:
    (tmp_path / "my_selectors.py").write_text(textwrap.dedent(USER_MODULE))
    return tmp_path


def test_custom_selector_is_imported_from_the_spec_folder(user_dir: Path) -> None:
    spec = parse({"name": "my_selectors:Mine", "params": {"boost": 4}})
    assert isinstance(spec, CustomSelection)
    selector = build_selector(spec, base_dir=user_dir)
    assert type(selector).__name__ == "Mine"
    assert selector.boost == 4  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("name", "params", "field", "message"),
    [
        ("no_such_module:Mine", {}, "selection.name", "cannot import module"),
        ("my_selectors:Missing", {}, "selection.name", "has no attribute"),
        ("my_selectors:not_a_class", {}, "selection.name", "subclass of fedpilot.selection"),
        ("my_selectors:Abstract", {}, "selection.name", "is abstract; implement select"),
        ("my_selectors:Mine", {"speed": 2}, "selection.params", "speed"),
    ],
)
def test_custom_selector_errors_name_the_field(
    user_dir: Path, name: str, params: dict[str, Any], field: str, message: str
) -> None:
    with pytest.raises(SpecError, match=message) as info:
        build_selector(CustomSelection(name=name, params=params), base_dir=user_dir)
    assert info.value.field == field
    assert name in str(info.value) or "speed" in str(info.value)


def test_constructors_check_their_arguments() -> None:
    with pytest.raises(ValueError, match="factor"):
        PowerOfChoiceSelector(factor=0.5)
    with pytest.raises(ValueError, match="c"):
        UcbSelector(c=-1)
    with pytest.raises(ValueError, match="cutoff"):
        OortSelector(cutoff=0)


def test_a_checkpoint_from_another_selector_is_a_resume_error() -> None:
    state = UcbSelector().state_dict()
    with pytest.raises(ResumeError, match=r"'ucb'.*'oort'"):
        OortSelector().load_state_dict(state)
