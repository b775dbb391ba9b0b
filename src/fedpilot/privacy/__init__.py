"""Differential privacy: sample-level DP-SGD on the learners (``dpsgd``)."""

from fedpilot.privacy.dpsgd import DpSgd, dpsgd_transforms

__all__ = ["DpSgd", "dpsgd_transforms"]
