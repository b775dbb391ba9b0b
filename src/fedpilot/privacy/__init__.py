"""Privacy and integrity of updates: validation (and later DP and secure aggregation)."""

from fedpilot.privacy.validation import UpdateValidator, Validation

__all__ = ["UpdateValidator", "Validation"]
