"""The ``drift`` and ``simulation.drift`` sections: off by default, and a bad value is
refused with its field named."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tests.federations import digits_spec

from fedpilot.errors import SpecError
from fedpilot.spec import validate_spec
from fedpilot.transforms import transforms_for


def test_drift_is_off_by_default_and_adds_nothing_to_the_chain(tmp_path: Path) -> None:
    spec = digits_spec(tmp_path, "plain")
    assert spec.drift.enabled is False
    assert "drift" not in [t.name for t in transforms_for(spec)]
    on = digits_spec(
        tmp_path,
        "on",
        drift={"enabled": True},
        simulation={"drift": {"kind": "feature_shift", "round": 3}},
    )
    names = [t.name for t in transforms_for(on)]
    # The injected drift changes the data before the summary describes it.
    assert names.index("drift_injection") + 1 == names.index("drift")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"drift": {"enabled": True, "every": 0}}, "drift.every"),
        ({"drift": {"reference": {"labels": 1.5}}}, "drift.reference.labels"),
        ({"drift": {"test": "chi2"}}, "drift.test"),
        ({"drift": {"model": {"window": 2}}}, "drift.model.window"),
        ({"drift": {"federation": {"features": -1}}}, "drift.federation.features"),
        ({"simulation": {"drift": {"kind": "label_mix", "round": 0}}}, "simulation.drift.round"),
        ({"simulation": {"drift": {"kind": "rotate", "round": 2}}}, "simulation.drift.kind"),
    ],
)
def test_a_bad_drift_value_names_its_field(
    tmp_path: Path, change: dict[str, Any], field: str
) -> None:
    raw = {"name": "bad", "task": {"name": "digits-mlp"}, "output_dir": str(tmp_path), **change}
    with pytest.raises(SpecError) as caught:
        validate_spec(raw)
    assert field in str(caught.value)
