"""The spec's ``selection`` section: who trains each round.

``selection`` names a built-in selector (``random``, ``available``, ``power_of_choice``,
``oort``, ``ucb``) with its parameters, or a user's ``package.module:Class`` with
``params``. A bare string is shorthand for ``{name: <string>}``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Discriminator, Field, Tag, field_validator, model_validator

from fedpilot.spec.sections import Section, is_object_ref

BUILTIN_SELECTORS = ("random", "available", "power_of_choice", "oort", "ucb")
"""The spec names of the built-in selectors, in the order the docs list them."""

_CUSTOM_TAG = "custom"


class RandomSelection(Section):
    """Uniform over every reachable learner, available or not (FedAvg's baseline)."""

    name: Literal["random"] = Field(default="random", description="Selector name.")


class AvailableSelection(Section):
    """Uniform over the learners that are available now."""

    name: Literal["available"] = Field(default="available", description="Selector name.")


class PowerOfChoiceSelection(Section):
    """Power-of-choice (Cho et al. 2022): of ``factor·size`` available learners drawn
    uniformly, train those with the highest last reported loss."""

    name: Literal["power_of_choice"] = Field(
        default="power_of_choice", description="Selector name."
    )
    factor: float = Field(
        default=2.0,
        ge=1,
        le=1000,
        description="Candidates drawn per place (d = ceil(factor·size)); 1 is uniform.",
    )


class OortSelection(Section):
    """Oort (Lai et al. 2021): exploit learners with high statistical utility that finish
    in time, explore untried ones. Defaults follow FedScale's Oort configuration."""

    name: Literal["oort"] = Field(default="oort", description="Selector name.")
    exploration: float = Field(
        default=0.9, ge=0, le=1, description="Share of round 1 given to never-tried learners."
    )
    exploration_decay: float = Field(
        default=0.98, gt=0, le=1, description="Exploration share multiplier per round."
    )
    exploration_min: float = Field(
        default=0.3, ge=0, le=1, description="Floor of the exploration share."
    )
    alpha: float = Field(
        default=2.0,
        ge=0,
        le=100,
        description="Penalty exponent for learners slower than the preferred duration T: "
        "utility × (T/t)^alpha.",
    )
    preferred_duration: float | None = Field(
        default=None,
        gt=0,
        description="Preferred round duration T in seconds; default: the pacer_quantile of "
        "the learners' observed durations.",
    )
    pacer_quantile: float = Field(
        default=0.3,
        ge=0,
        le=1,
        description="Quantile of observed durations used as T when preferred_duration is unset.",
    )
    cutoff: float = Field(
        default=0.95,
        gt=0,
        le=1,
        description="Exploit among learners whose utility is at least cutoff × the k-th "
        "best (1: strictly the top k).",
    )
    clip_quantile: float = Field(
        default=0.98, gt=0, le=1, description="Statistical utilities are clipped here."
    )
    staleness: float = Field(
        default=0.1,
        ge=0,
        le=100,
        description="Weight of the bonus sqrt(staleness·ln(round)/last_round) for "
        "learners not chosen recently.",
    )
    max_failures: int = Field(
        default=3,
        ge=1,
        le=1_000_000,
        description="Consecutive failed or rejected rounds before a learner is blacklisted.",
    )
    blacklist_rounds: int = Field(
        default=10,
        ge=0,
        le=1_000_000,
        description="Rounds a blacklisting lasts before the learner gets a fresh start "
        "(0: never blacklist).",
    )

    @model_validator(mode="after")
    def _floor_below_start(self) -> OortSelection:
        if self.exploration_min > self.exploration:
            raise ValueError(
                "`selection.exploration_min` must be <= `selection.exploration`, got "
                f"exploration_min={self.exploration_min}, exploration={self.exploration}"
            )
        return self


class UcbSelection(Section):
    """A UCB1 bandit on each learner's measured contribution (statistical utility per
    second); never-tried learners first."""

    name: Literal["ucb"] = Field(default="ucb", description="Selector name.")
    c: float = Field(
        default=1.0,
        ge=0,
        le=100,
        description="Exploration weight: score = mean reward + c·sqrt(2·ln(t)/n).",
    )


class CustomSelection(Section):
    """A user's Selector subclass, instantiated with ``params`` as keyword arguments."""

    name: str = Field(description="`package.module:Class`, a subclass of fedpilot Selector.")
    params: dict[str, Any] = Field(
        default_factory=dict, description="Keyword arguments for the class."
    )

    @field_validator("name")
    @classmethod
    def _object_ref(cls, value: str) -> str:
        if not is_object_ref(value):
            raise ValueError(
                f"`selection.name` must be one of {', '.join(BUILTIN_SELECTORS)} "
                f"or `package.module:Class`, got name={value!r}"
            )
        return value


def _tag(value: Any) -> str:
    # Built-in names pick their own section; anything else is validated as a custom
    # reference, whose name check gives the message listing the allowed values.
    name = value.get("name") if isinstance(value, dict) else getattr(value, "name", None)
    return name if isinstance(name, str) and name in BUILTIN_SELECTORS else _CUSTOM_TAG


def _shorthand(value: Any) -> Any:
    if isinstance(value, str):
        return {"name": value}
    if not isinstance(value, dict | Section):
        raise ValueError(
            "`selection` must be a selector name or a mapping with `name` "
            f"(one of {', '.join(BUILTIN_SELECTORS)} or `package.module:Class`), "
            f"got selection={value!r}"
        )
    return value


SelectionSpec = Annotated[
    Annotated[RandomSelection, Tag("random")]
    | Annotated[AvailableSelection, Tag("available")]
    | Annotated[PowerOfChoiceSelection, Tag("power_of_choice")]
    | Annotated[OortSelection, Tag("oort")]
    | Annotated[UcbSelection, Tag("ucb")]
    | Annotated[CustomSelection, Tag(_CUSTOM_TAG)],
    Discriminator(_tag),
    BeforeValidator(_shorthand),
]
"""The ``selection`` section: one of the built-in selectors or a custom one, by ``name``."""
