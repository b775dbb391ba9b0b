"""Client selection: who trains each round, built from the spec's ``selection`` section."""

from __future__ import annotations

from pathlib import Path

from fedpilot.ledger import LearnerOutcome, OutcomeStatus
from fedpilot.registry import Registry
from fedpilot.selection._base import Selection, Selector
from fedpilot.selection._common import LoggedSelector
from fedpilot.selection.oort import OortSelector
from fedpilot.selection.power_of_choice import PowerOfChoiceSelector
from fedpilot.selection.ucb import UcbSelector, contributions
from fedpilot.selection.uniform import AvailableSelector, RandomSelector
from fedpilot.spec.selection import CustomSelection, SelectionSpec

SELECTORS: Registry[Selector] = Registry("selector", Selector, field="selection.name")
"""Built-in selectors by their spec name (``selection.name``)."""
for _name, _cls in (
    ("random", RandomSelector),
    ("available", AvailableSelector),
    ("power_of_choice", PowerOfChoiceSelector),
    ("oort", OortSelector),
    ("ucb", UcbSelector),
):
    SELECTORS.add(_name, _cls)


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
    params = spec.params if isinstance(spec, CustomSelection) else spec.model_dump(exclude={"name"})
    return SELECTORS.build(spec.name, params, base_dir=base_dir)


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
