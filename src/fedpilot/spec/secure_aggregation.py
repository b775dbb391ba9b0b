"""The ``secure_aggregation`` section (off unless present) and what it cannot be combined with.

With secure aggregation the server never sees an individual update, so anything that
reads one is refused with a message naming both fields: a robust aggregation rule or norm
clipping, per-update norm checks, adaptive weighting by update quality, and strategies
whose server half reads per-learner arrays (SCAFFOLD's control deltas) or folds updates
its own way (FedNova). The cohort checks on by default (``validation.max_norm_ratio``,
``validation.max_examples_ratio``) are skipped under secure aggregation; set to another
value than their default, they are refused. The aggregate is the unweighted mean of the
survivors' updates.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field

from fedpilot.spec.sections import Section

if TYPE_CHECKING:
    from fedpilot.spec.model import FederationSpec


class SecureAggregationSpec(Section):
    """SecAgg+ (Bell et al. 2020) over a sparse neighbour graph."""

    threshold: float = Field(
        default=0.6,
        gt=0,
        le=1,
        description="Fraction of a learner's neighbours whose shares rebuild its secrets; "
        "a round with fewer left fails and keeps its model.",
    )
    neighbours: int | None = Field(
        default=None,
        ge=2,
        description="Neighbours per learner (k); None: 2·ceil(log2 n), at most n − 1.",
    )
    bits: int = Field(
        default=32,
        ge=16,
        le=48,
        description="The ring Z_{2^bits} updates are summed in (≤ 32: 4 bytes per parameter).",
    )
    clip: float = Field(
        default=1.0,
        gt=0,
        description="Each update coordinate (update − global model) is clipped to [−clip, clip] "
        "before fixed-point quantization.",
    )

    def transform_params(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


_SEALED_STRATEGIES = {
    "scaffold": "its server reads every learner's control delta",
    "fednova": "it folds each update by its own local steps",
}


def secure_aggregation_refusal(spec: FederationSpec) -> str | None:
    """Why ``spec``'s other sections cannot run with secure aggregation, or None."""
    if spec.secure_aggregation is None:
        return None
    why = "needs individual updates, which secure aggregation never reveals"
    if spec.aggregation.rule != "mean":
        rule = spec.aggregation.rule
        return f"`aggregation.rule={rule}` {why}; use rule mean or remove `secure_aggregation`"
    if spec.aggregation.clip is not None:
        return f"`aggregation.clip` {why}; remove it (secure_aggregation.clip bounds updates)"
    validation = spec.validation
    if validation.norm_outlier_z is not None:
        return f"`validation.norm_outlier_z` {why}; remove it or `secure_aggregation`"
    for name in ("max_norm_ratio", "max_examples_ratio"):
        # Any value but the default or null: a resolved spec (as a learner re-reads it)
        # sets every field, so "set by the user" is known only by its value.
        value = getattr(validation, name)
        if value is not None and value != type(validation).model_fields[name].default:
            return (
                f"`validation.{name}` {why} (skipped by default under `secure_aggregation`); "
                f"set it to null or remove `secure_aggregation`"
            )
    if spec.weighting.scheme == "adaptive":
        return (
            f"`weighting.scheme=adaptive` weighs each update by its quality and {why}; "
            "use another scheme or remove `secure_aggregation`"
        )
    if spec.privacy.mode == "central":
        return (
            f"`privacy.mode=central` clips each update on the server and {why}; use "
            "privacy.mode=distributed (learners clip and noise before masking) or remove "
            "`secure_aggregation`"
        )
    if spec.compression.codec != "none":
        return (
            f"`compression.codec={spec.compression.codec}` cannot run with "
            "`secure_aggregation`: a masked update is uniformly random in the ring and does "
            "not compress; remove one of them"
        )
    reason = _SEALED_STRATEGIES.get(spec.strategy.name)
    if reason is not None:
        return (
            f"`strategy.name={spec.strategy.name}` cannot run with `secure_aggregation`: {reason}"
        )
    return None
