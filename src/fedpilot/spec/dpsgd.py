"""The ``privacy.dpsgd`` section: sample-level DP-SGD on every learner (torch tasks, Opacus)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from fedpilot.spec.sections import Section


class DpSgdSpec(Section):
    """Sample-level differential privacy inside each learner's local training (DP-SGD).

    Each learner trains with Opacus: every optimizer step draws a Poisson sample of the
    learner's records (each record independently with probability
    ``local.batch_size / records``), clips every record's gradient to ``max_grad_norm``
    and adds Gaussian noise of standard deviation ``noise_multiplier · max_grad_norm``.
    Neighbouring datasets differ in one record of one learner (record-level, add/remove):
    ε protects a single record against anyone who sees that learner's updates, the
    server included; it says nothing about a learner's whole dataset.

    Give ``noise_multiplier`` or ``target_epsilon``. With ``target_epsilon`` each learner
    picks the noise that reaches it after ``rounds × local steps`` steps, as if it
    trained every round, so a learner sampled less often ends below the target.
    """

    enabled: bool = False
    noise_multiplier: float | None = Field(
        default=None, gt=0, le=1000, description="Noise std over max_grad_norm."
    )
    target_epsilon: float | None = Field(
        default=None, gt=0, le=1000, description="Each learner's ε after the whole run."
    )
    max_grad_norm: float = Field(default=1.0, gt=0, description="Per-record gradient bound.")
    delta: float = Field(default=1e-5, gt=0, lt=1, description="δ of the reported (ε, δ).")
    accountant: Literal["rdp", "prv"] = Field(
        default="rdp", description="Opacus's accountant (RDP or PRV)."
    )

    @model_validator(mode="after")
    def _one_noise_source(self) -> DpSgdSpec:
        if self.enabled and (self.noise_multiplier is None) == (self.target_epsilon is None):
            raise ValueError(
                "`privacy.dpsgd` needs exactly one of `privacy.dpsgd.noise_multiplier` and "
                f"`privacy.dpsgd.target_epsilon`, got noise_multiplier={self.noise_multiplier}, "
                f"target_epsilon={self.target_epsilon}"
            )
        return self


__all__ = ["DpSgdSpec"]
