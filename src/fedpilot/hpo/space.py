"""A search space declared in the spec, as Optuna suggestions and spec overrides."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from fedpilot.spec import FederationSpec, apply_overrides, validate_spec
from fedpilot.spec.tune import Scalar, SearchParam

if TYPE_CHECKING:
    import optuna


def suggest(trial: optuna.Trial, space: Mapping[str, SearchParam]) -> dict[str, Any]:
    """One value per dimension of ``space``, named by its spec path."""
    values: dict[str, Any] = {}
    for path, param in space.items():
        values[path] = suggest_one(trial, path, param)
    return values


def suggest_one(trial: optuna.Trial, name: str, param: SearchParam) -> Scalar:
    if param.kind == "categorical":
        # Optuna's choices are bool | int | float | str | None; a spec's never hold None.
        choice = trial.suggest_categorical(name, list(param.choices or []))
        assert choice is not None
        return choice
    low, high = param.low or 0, param.high or 0
    if param.kind == "int":
        step = int(param.step or 1)
        return trial.suggest_int(name, int(low), int(high), step=step, log=param.log)
    return trial.suggest_float(name, float(low), float(high), step=param.step, log=param.log)


def overrides(values: Mapping[str, Any]) -> list[str]:
    """``values`` as ``--set`` overrides (JSON is YAML: each value keeps its type)."""
    return [f"{path}={json.dumps(value)}" for path, value in sorted(values.items())]


def applied(spec: FederationSpec, values: Mapping[str, Any]) -> FederationSpec:
    """``spec`` with ``values`` set at their paths, validated: a trial's spec, without
    the study's ``tune`` section (a learner's ``tune.learner`` stays).

    Raises:
        SpecError: a value the field refuses (the space's edges were checked with the spec).
    """
    raw = spec.model_dump(mode="json", exclude={"tune"})
    # The study's space stays behind (its edges are checked against the spec it came
    # with, not one of its points); what a learner tunes is part of the run.
    if spec.tune is not None and spec.tune.learner is not None:
        raw["tune"] = {"learner": spec.tune.learner.model_dump(mode="json")}
    return validate_spec(apply_overrides(raw, overrides(values)))


__all__ = ["applied", "overrides", "suggest", "suggest_one"]
