"""Drift: learners' data summaries, the server's data and model drift tests, and the
simulated drift that measures them.

- :mod:`.summary`: what a learner tells about its data (label histogram; per feature
  mean, std and a quantile sketch over at most ``max_features`` features).
- :mod:`.transform`: ``drift``, the transform that carries summaries (and each learner's
  own evaluation of the model it receives) on the training reply; :class:`DriftState`,
  what the server keeps of them.
- :mod:`.compare`: Jensen–Shannon, PSI, KS on sketches, pooling, Mann–Kendall.
- :mod:`.watch`: :class:`DriftWatch`, the observer that runs the tests after each round
  and raises ``DriftDetected`` events.
- :mod:`.inject`: ``drift_injection``, the learner half of ``simulation.drift``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fedpilot.drift.inject import DriftInjection
from fedpilot.drift.transform import DriftMonitor, DriftState, drift_monitor
from fedpilot.spec.transforms import TransformSpec

if TYPE_CHECKING:
    from fedpilot.spec import FederationSpec

__all__ = ["DriftInjection", "DriftMonitor", "DriftState", "drift_monitor", "drift_transforms"]


def drift_transforms(spec: FederationSpec) -> list[TransformSpec]:
    """The drift stages of ``spec``'s chain: the simulated drift first (it changes the
    data the summary describes), then the summaries."""
    chain = []
    if spec.simulation is not None and spec.simulation.drift is not None:
        chain.append(TransformSpec(name="drift_injection"))
    drift = spec.drift
    if drift.enabled:
        params = {
            "every": drift.every,
            "max_features": drift.max_features,
            "quantiles": drift.quantiles,
            "noise": drift.noise,
            "metric": drift.model.metric if drift.model.enabled else None,
            "window": drift.model.window,
        }
        chain.append(TransformSpec(name="drift", params=params))
    return chain
