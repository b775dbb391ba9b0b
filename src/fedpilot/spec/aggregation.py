"""The ``aggregation`` section: which rule combines a round's updates, and norm bounding.

Kept apart from ``sections.py`` so the robust-aggregation options live beside each other;
the names of the built-in rules are listed here (not imported from
``fedpilot.aggregation``) so the spec package never imports the code it configures.
"""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from fedpilot.spec.sections import Section, is_object_ref

BUILTIN_RULES: tuple[str, ...] = (
    "mean",
    "median",
    "trimmed_mean",
    "krum",
    "multikrum",
    "bulyan",
    "rfa",
)
"""Rule names ``aggregation.rule`` accepts besides a ``package.module:Class`` reference."""


class NormClipSpec(Section):
    """Bound every update's delta norm before the rule combines them.

    Exactly one of ``bound`` (a fixed L2 bound) and ``quantile`` (the bound is that
    quantile of the round's delta norms, so it adapts to the cohort) is set. An update
    whose delta ``d`` is longer than the bound is scaled by ``bound / ‖d‖``.
    """

    bound: float | None = Field(
        default=None, gt=0, description="Fixed L2 bound on each update's delta (update − model)."
    )
    quantile: float | None = Field(
        default=None,
        gt=0,
        le=1,
        description="Clip to this quantile of the round's delta norms (1: the largest, no-op).",
    )

    @model_validator(mode="after")
    def _one_mode(self) -> NormClipSpec:
        if (self.bound is None) == (self.quantile is None):
            raise ValueError(
                "set exactly one of `bound` and `quantile`, "
                f"got bound={self.bound}, quantile={self.quantile}"
            )
        return self


class AggregationSpec(Section):
    """How the round's accepted updates become one aggregate.

    ``mean`` without clipping streams (memory independent of the cohort); every other
    rule, or the mean with ``clip``, keeps the round's updates in a disk-backed buffer
    and works through it in chunks of ``chunk_size`` parameters.
    """

    rule: str = Field(
        default="mean",
        description="mean | median | trimmed_mean | krum | multikrum | bulyan | rfa, "
        "or `package.module:Class` naming an AggregationRule subclass.",
    )
    trim_fraction: float = Field(
        default=0.1,
        ge=0,
        lt=0.5,
        description="trimmed_mean: share of values dropped at each end per coordinate.",
    )
    byzantine_fraction: float = Field(
        default=0.2,
        ge=0,
        lt=0.5,
        description="krum/multikrum/bulyan: assumed share of Byzantine updates; "
        "f = floor(fraction·n), capped at what the rule tolerates for n.",
    )
    multikrum_m: int | None = Field(
        default=None, ge=1, description="multikrum: updates averaged; default n − f."
    )
    rfa_max_iter: int = Field(
        default=20, ge=1, le=10_000, description="rfa: most Weiszfeld iterations."
    )
    rfa_tol: float = Field(
        default=1e-6, gt=0, description="rfa: stop when the objective changes by less (relative)."
    )
    clip: NormClipSpec | None = Field(
        default=None, description="Bound each update's delta norm before the rule."
    )
    chunk_size: int = Field(
        default=262_144,
        ge=1,
        description="Parameters per chunk for buffered rules; memory ≈ n × chunk_size × 4 bytes.",
    )

    @field_validator("rule")
    @classmethod
    def _known_rule(cls, value: str) -> str:
        if value in BUILTIN_RULES or is_object_ref(value):
            return value
        raise ValueError(
            f"`rule` must be one of {' | '.join(BUILTIN_RULES)} or look like "
            f"`package.module:Class`, got rule={value!r}"
        )
