"""The built-in update transforms by spec name (``transforms[].name``)."""

from __future__ import annotations

from fedpilot.registry import Registry
from fedpilot.transforms._base import UpdateTransform

TRANSFORMS: Registry[UpdateTransform] = Registry(
    "transform", UpdateTransform, field="transforms.name"
)

__all__ = ["TRANSFORMS"]
