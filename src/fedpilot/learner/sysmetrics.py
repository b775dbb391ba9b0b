"""System metrics a learner reports with each reply: what the work cost its machine."""

from __future__ import annotations

import resource
import sys
import time

from fedpilot.types import Metrics, Weights, weights_nbytes

PREFIX = "sys."
"""Reply metrics under this prefix describe the machine, not the model."""
BYTES_RECEIVED = PREFIX + "bytes_received"
BYTES_SENT = PREFIX + "bytes_sent"


class Meter:
    """Measures the work done between its creation and :meth:`read`: ``sys.train_seconds``
    (wall), ``sys.cpu_seconds`` (this process), ``sys.peak_rss_mb`` (this process's peak
    so far), ``sys.bytes_received`` (the instruction's arrays) and ``sys.bytes_sent``
    (the reply's arrays)."""

    __slots__ = ("_cpu", "_received", "_wall")

    def __init__(self, received: Weights) -> None:
        self._received = received
        self._wall, self._cpu = time.perf_counter(), time.process_time()

    def read(self, *sent: Weights) -> Metrics:
        return {
            PREFIX + "train_seconds": time.perf_counter() - self._wall,
            PREFIX + "cpu_seconds": time.process_time() - self._cpu,
            PREFIX + "peak_rss_mb": _peak_rss_mb(),
            BYTES_RECEIVED: float(weights_nbytes(self._received)),
            BYTES_SENT: float(sum(weights_nbytes(w) for w in sent)),
        }


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024
