"""Client selection: who trains each round, built from the spec's ``selection`` section."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from fedpilot._imports import import_object
from fedpilot.errors import SpecError
from fedpilot.ledger import LearnerOutcome, OutcomeStatus
from fedpilot.selection._base import Selection, Selector
from fedpilot.selection._common import LoggedSelector
from fedpilot.selection.oort import OortSelector
from fedpilot.selection.power_of_choice import PowerOfChoiceSelector
from fedpilot.selection.ucb import UcbSelector, contributions
from fedpilot.selection.uniform import AvailableSelector, RandomSelector
from fedpilot.spec.selection import CustomSelection, SelectionSpec

SELECTORS: dict[str, type[Selector]] = {
    "random": RandomSelector,
    "available": AvailableSelector,
    "power_of_choice": PowerOfChoiceSelector,
    "oort": OortSelector,
    "ucb": UcbSelector,
}
"""Built-in selector names (the spec's ``selection.name``) and their classes."""


def build_selector(spec: SelectionSpec, *, base_dir: Path | None = None) -> Selector:
    """The Selector a spec's ``selection`` section describes.

    Args:
        spec: The ``selection`` section; a built-in's fields (but ``name``) become the
            selector's keyword arguments, a custom one's ``params`` do.
        base_dir: Folder put on ``sys.path`` while a user's module is imported (the
            spec's folder).

    Returns:
        A fresh selector with no history.

    Raises:
        SpecError: The name cannot be resolved or is not a concrete Selector subclass
            (``selection.name``), or the class refuses the params (``selection.params``).
    """
    if not isinstance(spec, CustomSelection):
        params = spec.model_dump(exclude={"name"})
        return SELECTORS[spec.name](**params)
    obj = import_object(spec.name, field="selection.name", base_dir=base_dir)
    if not (isinstance(obj, type) and issubclass(obj, Selector)):
        raise SpecError(
            "`selection.name` must name a subclass of fedpilot.selection.Selector, "
            f"got name={spec.name!r} ({type(obj).__name__} {obj!r})",
            field="selection.name",
        )
    if inspect.isabstract(obj):
        missing = ", ".join(sorted(getattr(obj, "__abstractmethods__", ())))
        raise SpecError(
            f"`selection.name`: {spec.name!r} is abstract; implement {missing}",
            field="selection.name",
        )
    return _instantiate(obj, spec.params, spec.name)


def _instantiate(cls: type[Selector], params: dict[str, Any], name: str) -> Selector:
    try:
        inspect.signature(cls).bind(**params)
    except TypeError as exc:
        raise SpecError(
            f"`selection.params` do not fit {name}: {exc}, got params={params!r}",
            field="selection.params",
        ) from None
    try:
        return cls(**params)
    except (TypeError, ValueError) as exc:
        raise SpecError(
            f"`selection.params`: {name} refused them: {exc}, got params={params!r}",
            field="selection.params",
        ) from exc


__all__ = [
    "SELECTORS",
    "AvailableSelector",
    "LearnerOutcome",
    "LoggedSelector",
    "OortSelector",
    "OutcomeStatus",
    "PowerOfChoiceSelector",
    "RandomSelector",
    "Selection",
    "Selector",
    "UcbSelector",
    "build_selector",
    "contributions",
]
