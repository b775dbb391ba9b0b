"""Secure aggregation (SecAgg+ after Bell et al. 2020): the server learns only the sum of
the surviving learners' updates.

``crypto`` (primitives), ``quantize`` (fixed point in Z_{2^bits}), ``graph`` (the
neighbour graph), ``secret`` (the learner's own secret), ``learner`` and ``transform``
(the two halves). Light on purpose: the chain imports this module on every learner.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fedpilot.spec.transforms import TransformSpec

if TYPE_CHECKING:
    from fedpilot.spec import FederationSpec

TRANSFORM = "fedpilot.secagg.transform:SecureAggregation"


def secagg_transforms(spec: FederationSpec) -> list[TransformSpec]:
    """The chain's secure aggregation entry: none unless the spec turns it on."""
    section = spec.secure_aggregation
    if section is None:
        return []
    return [TransformSpec(name=TRANSFORM, params=section.transform_params())]


__all__ = ["TRANSFORM", "secagg_transforms"]
