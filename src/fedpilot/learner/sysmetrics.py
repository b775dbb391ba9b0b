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
    (the reply's arrays).

    One ``getrusage`` call at each end gives both CPU time and peak memory: system calls
    are what a small model's learner spends most of its measuring time on.
    """

    __slots__ = ("_cpu", "_received", "_wall")

    def __init__(self, received: Weights) -> None:
        self._received = received
        self._wall = time.perf_counter()
        usage = resource.getrusage(resource.RUSAGE_SELF)
        self._cpu = usage.ru_utime + usage.ru_stime

    def read(self, *sent: Weights) -> Metrics:
        wall = time.perf_counter() - self._wall
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return {
            PREFIX + "train_seconds": wall,
            PREFIX + "cpu_seconds": usage.ru_utime + usage.ru_stime - self._cpu,
            PREFIX + "peak_rss_mb": _megabytes(usage.ru_maxrss),
            BYTES_RECEIVED: float(weights_nbytes(self._received)),
            BYTES_SENT: float(sum(weights_nbytes(w) for w in sent)),
        }


def _megabytes(maxrss: int) -> float:
    # Linux reports KiB, macOS bytes.
    return maxrss / (1024 * 1024) if sys.platform == "darwin" else maxrss / 1024
