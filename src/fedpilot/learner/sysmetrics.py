"""System metrics a learner reports with each reply: what the work cost its machine."""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from fedpilot.types import Metrics, Weights, weights_nbytes

PREFIX = "sys."
"""Reply metrics under this prefix describe the machine, not the model."""


@contextmanager
def measure(received: Weights) -> Iterator[Metrics]:
    """Measure the work done inside the block; the yielded dict is filled on exit with
    ``sys.train_seconds`` (wall), ``sys.cpu_seconds`` (this process), ``sys.peak_rss_mb``
    (this process's peak so far) and ``sys.bytes_received`` (the instruction's arrays).
    The caller adds ``sys.bytes_sent`` once the reply is built (:func:`bytes_sent`)."""
    metrics: Metrics = {}
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        yield metrics
    finally:
        metrics[PREFIX + "train_seconds"] = time.perf_counter() - wall
        metrics[PREFIX + "cpu_seconds"] = time.process_time() - cpu
        metrics[PREFIX + "peak_rss_mb"] = _peak_rss_mb()
        metrics[PREFIX + "bytes_received"] = float(weights_nbytes(received))


def bytes_sent(*arrays: Weights) -> Metrics:
    return {PREFIX + "bytes_sent": float(sum(weights_nbytes(w) for w in arrays))}


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024
