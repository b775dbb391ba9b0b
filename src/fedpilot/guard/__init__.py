"""Quality gates on the global model."""

from fedpilot.guard._base import Guard, Verdict
from fedpilot.guard.relative_drop import AcceptAll, RelativeDropGuard
from fedpilot.spec.sections import GuardSpec


def build_guard(spec: GuardSpec) -> Guard:
    if not spec.enabled:
        return AcceptAll()
    return RelativeDropGuard(spec.metric, spec.mode, spec.max_relative_drop)


__all__ = ["AcceptAll", "Guard", "RelativeDropGuard", "Verdict", "build_guard"]
