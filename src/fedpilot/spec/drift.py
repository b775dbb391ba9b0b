"""The ``drift`` section (off by default): learners' data summaries and the tests the server
runs on them and on the model's metrics; and ``simulation.drift``, the injected drift that
lets detection be measured.

The tests themselves live in :mod:`fedpilot.drift`; this module only says what a spec
may ask for.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from fedpilot.spec.sections import Section


class DriftThresholds(Section):
    """Scores above which a comparison raises a drift event."""

    labels: float = Field(
        default=0.1,
        gt=0,
        le=1,
        description="Jensen–Shannon distance (base 2, in [0, 1]) between label histograms.",
    )
    features: float = Field(
        default=0.25,
        gt=0,
        description="The feature test's score (PSI, or the KS statistic in [0, 1]) of the "
        "most shifted feature.",
    )


class ModelDriftSpec(Section):
    """Model drift: a learner's own evaluation of the global model falling while the global
    metric holds, and a falling trend of the global metric."""

    enabled: bool = True
    metric: str = Field(
        default="accuracy",
        description="The task metric watched (each learner evaluates the model it receives "
        "on its own data before training; the global one is the round's evaluation).",
    )
    mode: Literal["max", "min"] = Field(default="max", description="max: higher is better.")
    drop: float = Field(
        default=0.15,
        gt=0,
        description="A learner's evaluation fell by more than this (absolute) below its best "
        "of the last `window` rounds it trained in ...",
    )
    holds: float = Field(
        default=0.03,
        ge=0,
        description="... while the global metric fell by at most this over the same rounds.",
    )
    window: int = Field(
        default=8, ge=4, le=1000, description="Rounds the learner test and the trend test look at."
    )
    trend_p: float = Field(
        default=0.01,
        gt=0,
        lt=1,
        description="Mann–Kendall test of a worsening global metric over the last `window` "
        "rounds: the one-sided p-value below which it raises an event ...",
    )
    trend_min: float = Field(
        default=0.02,
        ge=0,
        description="... when the metric also worsened by at least this (Theil–Sen slope "
        "times the window).",
    )


class DriftSpec(Section):
    """Learners send a privacy-preserving summary of their local training data (label
    histogram; per-feature mean, standard deviation and quantile sketch, over at most
    ``max_features`` features) at their first round and every ``every`` rounds after, with
    their training reply. Each is compared with the learner's own first summary and with
    the federation's consensus of every learner's latest summary."""

    enabled: bool = False
    every: int = Field(
        default=5,
        ge=1,
        le=1_000_000,
        description="Rounds between a learner's summaries (it sends one at the first round "
        "it trains in after that many rounds).",
    )
    max_features: int = Field(
        default=64,
        ge=1,
        le=4096,
        description="Features summarized at most: wider inputs are summarized per channel "
        "(N, C, ...) or as the means of this many contiguous blocks.",
    )
    quantiles: int = Field(
        default=9, ge=3, le=99, description="Quantile levels in each feature's sketch (deciles: 9)."
    )
    noise: float = Field(
        default=0.0,
        ge=0,
        description="Gaussian noise the learner adds to its summary: std `noise` on each "
        "label count, `noise` standard errors on each feature statistic (a blur, not a "
        "formal differential privacy guarantee).",
    )
    test: Literal["psi", "ks"] = Field(
        default="psi",
        description="Feature test on the quantile sketches: population stability index, "
        "or the Kolmogorov–Smirnov statistic.",
    )
    reference: DriftThresholds = Field(
        default_factory=DriftThresholds,
        description="Thresholds against the learner's own first summary.",
    )
    federation: DriftThresholds | None = Field(
        default_factory=lambda: DriftThresholds(labels=0.3, features=1.0),
        description="Thresholds against the federation's consensus (the median of every "
        "learner's latest summary, from three learners on; raise them for a non-IID "
        "federation); null: no comparison with the federation.",
    )
    model: ModelDriftSpec = Field(default_factory=ModelDriftSpec)


class DriftInjectionSpec(Section):
    """Simulated drift: from round ``round`` on, a seeded share of the learners train (and
    evaluate) on changed data, so detection can be measured."""

    kind: Literal["label_mix", "feature_shift"] = Field(
        description="label_mix: the learner keeps only a share of its classes (resampled "
        "to its size); feature_shift: every feature moves by `shift` of its std."
    )
    round: int = Field(ge=1, description="The first round with drifted data.")
    fraction: float = Field(
        default=0.2, gt=0, le=1, description="Share of the learners that drift (at least one)."
    )
    keep_classes: float = Field(
        default=0.3, gt=0, lt=1, description="label_mix: share of its classes a learner keeps."
    )
    shift: float = Field(
        default=1.0, gt=0, le=100, description="feature_shift: the shift, in feature stds."
    )
