"""Alert conditions small enough to have two readings: PromQL for a Prometheus server, and
an evaluation here over the same metrics, so both fire on the same samples.

Only what fedpilot's rules need: a metric selector, ``time() - x`` (how long ago a
timestamp was) and a comparison with a constant. Every rule reads gauges the exporter
keeps per round (:mod:`fedpilot.monitoring.metrics`), never a range over time, so nothing
here needs history.
"""

from __future__ import annotations

import operator
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from prometheus_client.registry import Collector

Labels = tuple[tuple[str, str], ...]
"""A series' labels, sorted by name."""
Vector = dict[Labels, float]
"""An instant vector: one value per series."""
Samples = Mapping[str, Vector]
"""Every series now, by sample name (``fedpilot_round``, ``fedpilot_updates_total``)."""


def collect(registry: Collector) -> dict[str, Vector]:
    """The current samples of ``registry``, as the rules read them."""
    samples: dict[str, Vector] = {}
    for family in registry.collect():
        for sample in family.samples:
            labels = tuple(sorted(sample.labels.items()))
            samples.setdefault(sample.name, {})[labels] = float(sample.value)
    return samples


class Expr(ABC):
    """An expression with a PromQL text and a value here."""

    @abstractmethod
    def promql(self) -> str:
        """The expression as Prometheus reads it."""

    @abstractmethod
    def evaluate(self, samples: Samples, now: float) -> Vector:
        """The expression's instant vector over ``samples`` at ``now`` (seconds since
        the epoch, PromQL's ``time()``)."""

    def metrics(self) -> frozenset[str]:
        """The metric names it reads."""
        return frozenset()


@dataclass(frozen=True)
class Metric(Expr):
    """``name{label="value", ...}``: the series of a metric whose labels match."""

    name: str
    match: tuple[tuple[str, str], ...] = ()

    def promql(self) -> str:
        if not self.match:
            return self.name
        inner = ", ".join(f'{k}="{v}"' for k, v in self.match)
        return f"{self.name}{{{inner}}}"

    def evaluate(self, samples: Samples, now: float) -> Vector:
        found = samples.get(self.name, {})
        if not self.match:
            return dict(found)
        return {
            labels: value
            for labels, value in found.items()
            if all((k, v) in labels for k, v in self.match)
        }

    def metrics(self) -> frozenset[str]:
        return frozenset({self.name})


@dataclass(frozen=True)
class Age(Expr):
    """``time() - timestamp``: seconds since a timestamp gauge's value."""

    timestamp: Metric

    def promql(self) -> str:
        return f"time() - {self.timestamp.promql()}"

    def evaluate(self, samples: Samples, now: float) -> Vector:
        return {
            labels: now - value for labels, value in self.timestamp.evaluate(samples, now).items()
        }

    def metrics(self) -> frozenset[str]:
        return self.timestamp.metrics()


Operator = Literal["<", ">", ">="]

_COMPARE: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    ">": operator.gt,
    ">=": operator.ge,
}


@dataclass(frozen=True)
class Compare(Expr):
    """``left <op> threshold``: the series of ``left`` for which it holds (PromQL's
    filtering comparison; NaN compares false)."""

    left: Expr
    op: Operator
    threshold: float

    def promql(self) -> str:
        return f"{self.left.promql()} {self.op} {number(self.threshold)}"

    def evaluate(self, samples: Samples, now: float) -> Vector:
        holds = _COMPARE[self.op]
        return {
            labels: value
            for labels, value in self.left.evaluate(samples, now).items()
            if holds(value, self.threshold)
        }

    def metrics(self) -> frozenset[str]:
        return self.left.metrics()


def number(value: float) -> str:
    """A constant as PromQL reads it back exactly (``1200``, ``0.5``)."""
    return repr(float(value)) if value != round(value) else str(int(value))


__all__ = ["Age", "Compare", "Expr", "Labels", "Metric", "Samples", "Vector", "collect", "number"]
