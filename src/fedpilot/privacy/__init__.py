"""Learner-level differential privacy (DP-FedAvg, central or distributed) and its accountant.

The spec's ``privacy`` section turns it on; :func:`privacy_transforms` puts the
``learner_dp`` transform in every chain (learner and server alike), and ``launch/`` adds the
accountant to the checkpoint and :class:`PrivacyBudget` to the callbacks. Sample-level
DP-SGD (``privacy.dpsgd``) lives beside it in :mod:`.dpsgd`.
"""

from __future__ import annotations

from collections.abc import Sequence

from fedpilot.privacy.accountant import PrivacyAccountant
from fedpilot.privacy.budget import PrivacyBudget
from fedpilot.privacy.dpsgd import DpSgd, dpsgd_transforms
from fedpilot.privacy.learner_dp import LearnerDP
from fedpilot.spec import FederationSpec
from fedpilot.spec.transforms import TransformSpec
from fedpilot.transforms._base import UpdateTransform


def privacy_transforms(spec: FederationSpec) -> list[TransformSpec]:
    """The learner-level DP transform for ``spec``'s chain, or none when it is off."""
    privacy = spec.privacy
    if not privacy.learner_level:
        return []
    cohort = spec.sampling.size(spec.data.num_learners)
    params = {
        "mode": privacy.mode,
        "clipping": privacy.clipping,
        "clip_norm": privacy.clip_norm,
        "noise_multiplier": privacy.noise_multiplier,
        "cohort": cohort,
        "population": spec.data.num_learners,
        "sampling": privacy.sampling,
        "delta": privacy.delta,
        "target_epsilon": privacy.target_epsilon,
        "target_quantile": privacy.target_quantile,
        "clip_lr": privacy.clip_lr,
        "clipped_count_stddev": privacy.count_stddev(cohort),
    }
    return [TransformSpec(name=LearnerDP.name, params=params)]


def learner_dp(transforms: Sequence[UpdateTransform]) -> LearnerDP | None:
    """The chain's learner-level DP transform, if the spec has one."""
    return next((t for t in transforms if isinstance(t, LearnerDP)), None)


__all__ = [
    "DpSgd",
    "LearnerDP",
    "PrivacyAccountant",
    "PrivacyBudget",
    "dpsgd_transforms",
    "learner_dp",
    "privacy_transforms",
]
