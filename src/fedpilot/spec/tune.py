"""The ``tune`` section: what ``fedpilot tune`` searches, and what a learner tunes on its
own data before it trains.

The search space names spec fields by their dotted path (``local.lr``,
``strategy.server_lr``). A path is checked against the spec itself: the spec with each
bound (or choice) applied must validate, so a typo or a value the field refuses is an
error naming ``tune.space.<path>`` before any trial runs. Optuna is not imported here:
the spec package never imports the code it configures.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from fedpilot.spec.sections import Section

if TYPE_CHECKING:
    from fedpilot.spec.model import FederationSpec

Scalar = bool | int | float | str


class SearchParam(Section):
    """One dimension of the space: a float or int range, or categorical ``choices``.

    ``type`` defaults to categorical when ``choices`` is given, int when both bounds are
    integers, float otherwise.
    """

    type: Literal["float", "int", "categorical"] | None = None
    # int | float: pydantic keeps `low: 1` an int and `low: 1.0` a float (the type's default).
    low: int | float | None = None
    high: int | float | None = None
    log: bool = Field(default=False, description="Sample on a log scale (low > 0).")
    step: int | float | None = Field(default=None, gt=0, description="Sample on this grid.")
    choices: list[Scalar] | None = None

    @property
    def kind(self) -> Literal["float", "int", "categorical"]:
        if self.type is not None:
            return self.type
        if self.choices is not None:
            return "categorical"
        return "int" if isinstance(self.low, int) and isinstance(self.high, int) else "float"

    def values(self) -> list[Scalar]:
        """The values the space's edges apply: both bounds, or every choice."""
        if self.kind == "categorical":
            return list(self.choices or [])
        low, high = float(self.low or 0.0), float(self.high or 0.0)
        return [int(low), int(high)] if self.kind == "int" else [low, high]

    def refusal(self) -> str | None:
        """Why this dimension is malformed, or None (said after ``: `` in the message)."""
        if self.kind == "categorical":
            if self.low is not None or self.high is not None or self.log or self.step:
                return "a categorical parameter takes `choices` only, not low/high/log/step"
            if not self.choices:
                return f"`choices` must hold at least one value, got choices={self.choices}"
            return None
        if self.choices is not None:
            return f"a {self.kind} parameter takes low/high, not `choices`"
        if self.low is None or self.high is None:
            return f"a {self.kind} parameter needs both `low` and `high`"
        if self.low > self.high:
            return f"`low` must be <= `high`, got low={self.low} high={self.high}"
        if self.log and self.low <= 0:
            return f"a log scale needs low > 0, got low={self.low}"
        if self.log and self.step is not None:
            return "`log` and `step` do not combine (Optuna samples one or the other)"
        if self.kind == "int":
            for name, value in (("low", self.low), ("high", self.high), ("step", self.step)):
                if value is not None and not float(value).is_integer():
                    return f"an int parameter's `{name}` must be whole, got {name}={value}"
        return None


class SamplerSpec(Section):
    name: Literal["tpe", "random"] = "tpe"
    seed: int | None = Field(default=None, ge=0, lt=2**32, description="Default: the spec's seed.")


class PrunerSpec(Section):
    """Stops a trial's federation after a round whose guarded metric is hopeless."""

    name: Literal["median", "hyperband", "successive_halving", "none"] = "median"
    startup_trials: int = Field(
        default=2, ge=0, description="median: trials that run whole before any is pruned."
    )
    warmup_rounds: int = Field(
        default=1, ge=0, description="median: rounds a trial always runs before pruning."
    )
    min_rounds: int = Field(
        default=1, ge=1, description="hyperband, successive_halving: the smallest budget."
    )
    reduction_factor: int = Field(default=3, ge=2)


class Objective(Section):
    """One objective of a multi-objective study: a guarded metric of the final model,
    ``bytes`` (sent and received over the whole run) or ``epsilon`` (DP's ε spent)."""

    metric: str
    direction: Literal["maximize", "minimize"]


LEARNER_TUNABLE: tuple[str, ...] = (
    "local.lr",
    "local.epochs",
    "local.batch_size",
    "local.momentum",
    "local.weight_decay",
)
"""What a learner may tune on its own data: its numeric local settings, and any numeric
``task.params.<name>`` the spec sets (the task reads it from ``TrainSettings.task_params``)."""


class LearnerTuning(Section):
    """Each learner tunes its local settings on its own data with a small in-memory
    Optuna study (seeded) before its first round and, with ``every: k``, every k rounds.
    Only the chosen values and the local study's summary leave the learner."""

    space: dict[str, SearchParam]
    trials: int = Field(default=6, ge=1, le=200)
    every: int = Field(default=0, ge=0, description="Tune again every k rounds; 0: once.")
    validation_fraction: float = Field(default=0.25, gt=0, lt=1)
    metric: str | None = Field(default=None, description="Default: the guard's metric.")


class TuneSpec(Section):
    """The study ``fedpilot tune`` runs: each trial a federation of this spec with the
    sampled values applied as ``--set`` overrides."""

    space: dict[str, SearchParam] = Field(default_factory=dict)
    metric: str | None = Field(default=None, description="Default: the guard's metric.")
    direction: Literal["maximize", "minimize"] | None = Field(
        default=None, description="Default: from the guard's mode (max: maximize)."
    )
    objectives: list[Objective] | None = Field(
        default=None,
        description="A multi-objective study instead of one metric (no pruning then).",
    )
    sampler: SamplerSpec = Field(default_factory=SamplerSpec)
    pruner: PrunerSpec | None = Field(
        default=None, description="Default: median for one objective, none for several."
    )
    learner: LearnerTuning | None = None

    def guarded_metric(self, spec: FederationSpec) -> str:
        return self.metric or spec.guard.metric

    def study_direction(self, spec: FederationSpec) -> str:
        if self.direction is not None:
            return self.direction
        return "maximize" if spec.guard.mode == "max" else "minimize"

    def resolved_pruner(self) -> PrunerSpec:
        if self.pruner is not None:
            return self.pruner
        return PrunerSpec(name="none" if self.objectives else "median")


def tune_refusal(spec: FederationSpec) -> str | None:
    """Why ``spec``'s ``tune`` section cannot be run, or None. Each dimension of a space
    must be well formed and each of its edge values must make a valid spec."""
    tune = spec.tune
    if tune is None:
        return None
    if tune.objectives is not None:
        if len(tune.objectives) < 2:
            return "`tune.objectives` needs two or more objectives (or use `tune.metric`)"
        dp = spec.privacy.mode != "none" or spec.privacy.dpsgd.enabled
        if not dp and any(o.metric == "epsilon" for o in tune.objectives):
            return "`tune.objectives`: the objective epsilon needs privacy (privacy.mode or dpsgd)"
        if tune.pruner is not None and tune.pruner.name != "none":
            return (
                "`tune.pruner` cannot prune a multi-objective study (Optuna reports one "
                f"value a step), got pruner={tune.pruner.name!r} with objectives"
            )
    spaces = [("tune.space", tune.space)]
    if tune.learner is not None:
        spaces.append(("tune.learner.space", tune.learner.space))
        if spec.privacy.mode != "none" or spec.privacy.dpsgd.enabled:
            return (
                "`tune.learner` picks values on the learner's data outside the privacy "
                "accounting; remove it or turn privacy off"
            )
        for path in tune.learner.space:
            if path not in LEARNER_TUNABLE and not _is_task_param(path):
                return (
                    f"`tune.learner.space.{path}`: a learner tunes only "
                    f"{', '.join(LEARNER_TUNABLE)} and task.params.<name>"
                )
    for prefix, space in spaces:
        for path, param in space.items():
            why = param.refusal() or _applied_refusal(spec, path, param)
            if why is not None:
                return f"`{prefix}.{path}`: {why}"
    return None


def _applied_refusal(spec: FederationSpec, path: str, param: SearchParam) -> str | None:
    """Why applying one of ``param``'s edge values at ``path`` breaks the spec, or None."""
    from fedpilot.errors import SpecError
    from fedpilot.spec.load import apply_overrides, validate_spec

    base = spec.model_dump(mode="json", exclude={"tune"})
    for value in param.values():
        try:
            raw = apply_overrides(base, [f"{path}={json.dumps(value)}"])
            validate_spec(raw)
        except SpecError as exc:
            why = str(exc).removeprefix("invalid spec: ")
            return f"applying {path}={value!r} gives an invalid spec: {why}"
    if _lookup(base, path) is _MISSING:
        return f"no spec field `{path}` (write its value in the spec to tune it)"
    return None


_MISSING = object()


def _is_task_param(path: str) -> bool:
    parts = path.split(".")
    return len(parts) == 3 and parts[:2] == ["task", "params"] and parts[2].isidentifier()


def _lookup(raw: dict[str, Any], path: str) -> Any:
    node: Any = raw
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


__all__ = [
    "LEARNER_TUNABLE",
    "LearnerTuning",
    "Objective",
    "PrunerSpec",
    "SamplerSpec",
    "SearchParam",
    "TuneSpec",
    "tune_refusal",
]
