"""The spec's ``transforms`` list: the user's own update transforms, after the strategy's.

Each entry names a built-in transform (``label_flip``, ``proximal``, ...) or a user's
``package.module:Class`` (an :class:`~fedpilot.transforms.UpdateTransform`) with its
``params``. A bare string is shorthand for ``{name: <string>}``.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator, Field

from fedpilot.spec.sections import Section


def _shorthand(value: Any) -> Any:
    return {"name": value} if isinstance(value, str) else value


class TransformSpec(Section):
    """One update transform the learners' chain and the round's server stage run."""

    name: str = Field(min_length=1, description="A built-in transform or `package.module:Class`.")
    params: dict[str, Any] = Field(
        default_factory=dict, description="Keyword arguments of the transform's constructor."
    )


TransformEntry = Annotated[TransformSpec, BeforeValidator(_shorthand)]

__all__ = ["TransformEntry", "TransformSpec"]
