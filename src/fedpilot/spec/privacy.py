"""The ``privacy`` section: learner-level differential privacy (DP-FedAvg) and its budget.

Off by default. With it the learners' updates are clipped to a norm bound and Gaussian
noise is added to their sum: by the server (``central``) or by each learner, its share
(``distributed``, so with secure aggregation the server never holds an un-noised sum).
ε means nothing without the assumptions it is computed under, so they are fields here:
how learners are sampled and what a neighbouring dataset is.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from fedpilot.spec.dpsgd import DpSgdSpec
from fedpilot.spec.sections import Section


class PrivacySpec(Section):
    """Learner-level DP: clip each update's delta, add Gaussian noise to the sum, account.

    The accountant is ``dp_accounting``'s RDP accountant composing, once a round, a
    Gaussian mechanism of ``noise_multiplier`` sampled as ``sampling`` says with
    ``q = learners per round / data.num_learners``.
    """

    mode: Literal["none", "central", "distributed"] = Field(
        default="none",
        description="Learner-level DP: none (off); central: the server clips and adds the "
        "noise; distributed: each "
        "learner clips and adds std/sqrt(cohort) so the sum carries the central noise.",
    )
    clipping: Literal["fixed", "adaptive"] = Field(
        default="fixed",
        description="fixed: clip_norm throughout; adaptive: clip_norm moves toward the "
        "target_quantile of the update norms (Andrew et al. 2021).",
    )
    clip_norm: float = Field(
        default=1.0,
        gt=0,
        description="L2 bound on each update's delta (the initial one if adaptive).",
    )
    target_quantile: float = Field(
        default=0.5, gt=0, lt=1, description="adaptive: share of updates meant to be unclipped."
    )
    clip_lr: float = Field(
        default=0.2, gt=0, description="adaptive: geometric step of the clip per round (eta_C)."
    )
    clipped_count_stddev: float | None = Field(
        default=None,
        gt=0,
        description="adaptive: std of the noise on the count of unclipped updates "
        "(default: cohort/20, the paper's choice).",
    )
    noise_multiplier: float = Field(
        default=1.0,
        gt=0,
        description="z: the noise std on the sum of clipped deltas is z·clip_norm (the "
        "accounted multiplier; adaptive clipping spends part of it on the count).",
    )
    delta: float = Field(default=1e-5, gt=0, lt=1, description="δ of the reported ε(δ).")
    target_epsilon: float | None = Field(
        default=None,
        gt=0,
        description="Stop the run before the next round would take ε above this.",
    )
    sampling: Literal["fixed_size", "poisson"] = Field(
        default="fixed_size",
        description="How the accountant assumes learners are sampled: fixed_size (a "
        "uniformly random cohort of fixed size, what `selection: random` does) or poisson "
        "(each learner independently with probability q; an assumption the built-in "
        "selectors do not implement, they draw a fixed-size cohort).",
    )
    neighbouring: Literal["learner"] = Field(
        default="learner",
        description="Neighbouring datasets differ in one learner's whole data (record-level "
        "privacy is DP-SGD's, `privacy.dpsgd`).",
    )
    dpsgd: DpSgdSpec = Field(
        default_factory=DpSgdSpec,
        description="Sample-level DP-SGD inside each learner's training (torch tasks, Opacus); "
        "independent of `mode`, with its own accountant on each learner.",
    )

    @property
    def learner_level(self) -> bool:
        """Learner-level DP is on."""
        return self.mode != "none"

    def refusal(
        self, *, rule: str, clip: bool, weighting: str, strategy: str, selection: str, cohort: int
    ) -> str | None:
        """Why learner-level DP cannot work with the rest of the spec, or None.

        DP-FedAvg's sensitivity is the clip over a fixed denominator: every update must
        count the same in a plain mean, which no robust rule, extra norm bound, data-size
        or quality weighting, nor FedNova's normalised fold gives.
        """
        if not self.learner_level:
            return None
        mode = f"privacy.mode={self.mode!r}"
        if rule != "mean" or clip:
            return (
                f"`privacy.mode` and `aggregation` cannot be combined: {mode} needs the plain "
                f"mean of clipped updates, got aggregation.rule={rule!r}"
                + (" with aggregation.clip" if clip else "")
            )
        if weighting != "uniform":
            return (
                f"`privacy.mode` and `weighting.scheme` cannot be combined: {mode} needs every "
                f"update to count the same (weighting.scheme='uniform'), got "
                f"weighting.scheme={weighting!r}"
            )
        if strategy == "fednova":
            return (
                f"`privacy.mode` and `strategy.name` cannot be combined: {mode} needs the plain "
                "mean of clipped updates, FedNova folds normalised ones"
            )
        if strategy == "scaffold":
            return (
                f"`privacy.mode` and `strategy.name` cannot be combined: {mode} clips and "
                "noises the model update only, SCAFFOLD's control variates would reach the "
                "server as they are"
            )
        if self.sampling == "fixed_size" and selection != "random":
            return (
                f"`privacy.sampling` and `selection.name` cannot be combined: "
                f"privacy.sampling='fixed_size' accounts for a uniformly random cohort, "
                f"got selection.name={selection!r}"
            )
        if self.clipping == "adaptive" and 2 * self.count_stddev(cohort) <= self.noise_multiplier:
            return (
                "`privacy.clipped_count_stddev` and `privacy.noise_multiplier` cannot be "
                "combined: the clipped count's noise takes part of the accounted multiplier, "
                "so 2·clipped_count_stddev must exceed noise_multiplier, got "
                f"clipped_count_stddev={self.count_stddev(cohort):g} (default: cohort/20 = "
                f"{cohort}/20), noise_multiplier={self.noise_multiplier:g}"
            )
        return None

    def count_stddev(self, cohort: int) -> float:
        """The std of the noise on the count of unclipped updates (adaptive clipping)."""
        if self.clipped_count_stddev is not None:
            return self.clipped_count_stddev
        return cohort / 20


__all__ = ["PrivacySpec"]
