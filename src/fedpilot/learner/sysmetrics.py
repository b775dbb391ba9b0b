"""System metrics a learner reports with each reply: what the work cost its machine."""

from __future__ import annotations

import resource
import sys
import time

from fedpilot.types import LearnerState, Metrics, Weights, weights_nbytes

PREFIX = "sys."
"""Reply metrics under this prefix describe the machine, not the model."""
TRAIN_SECONDS = PREFIX + "train_seconds"
CPU_SECONDS = PREFIX + "cpu_seconds"
PEAK_RSS_MB = PREFIX + "peak_rss_mb"
BYTES_RECEIVED = PREFIX + "bytes_received"
BYTES_SENT = PREFIX + "bytes_sent"
STATE_BYTES_RECEIVED = PREFIX + "state_bytes_received"
STATE_BYTES_SENT = PREFIX + "state_bytes_sent"
"""The learner's own state (SCAFFOLD's c_i, an error-feedback residual) as it came with
the work and goes back with the reply. The server holds it, so a Flower wire carries it
beside the model and the update; reported apart, and only where a transform keeps one."""


def state_bytes(received: LearnerState, sent: LearnerState) -> Metrics:
    """:data:`STATE_BYTES_RECEIVED` and :data:`STATE_BYTES_SENT`, or nothing without state."""
    before = sum(weights_nbytes(arrays) for arrays in received.values())
    after = sum(weights_nbytes(arrays) for arrays in sent.values())
    if not (before or after):
        return {}
    return {STATE_BYTES_RECEIVED: float(before), STATE_BYTES_SENT: float(after)}


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
            TRAIN_SECONDS: wall,
            CPU_SECONDS: usage.ru_utime + usage.ru_stime - self._cpu,
            PEAK_RSS_MB: usage.ru_maxrss / _MAXRSS_PER_MB,
            BYTES_RECEIVED: float(weights_nbytes(self._received)),
            BYTES_SENT: float(sum([weights_nbytes(w) for w in sent])),
        }


_MAXRSS_PER_MB = 1024 * 1024 if sys.platform == "darwin" else 1024
"""``ru_maxrss`` is in bytes on macOS, KiB on Linux."""
