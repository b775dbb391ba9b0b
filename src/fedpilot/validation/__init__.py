"""Update validation: is this update sane before it is folded in (shape, dtype, finite,
norm, a plausible ``num-examples``; cohort outliers)."""

from fedpilot.validation.checks import UpdateValidator, Validation

__all__ = ["UpdateValidator", "Validation"]
