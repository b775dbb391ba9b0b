"""Buffered rules keep memory bounded: the rows live on disk, not in RSS."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

UPDATES, PARAMS = 100, 1_000_000
ROWS_BYTES = UPDATES * PARAMS * 4  # 400 MB if the rows were held in memory
LIMIT = 200_000_000

# Extra RSS = peak RSS at the end (VmHWM) minus the RSS right before the first add
# (not the peak so far, which import-time spikes could inflate): an upper bound.
SCRIPT = textwrap.dedent(
    f"""
    import resource, sys
    import numpy as np
    from fedpilot.aggregation import RuleAggregator, Krum, Median
    from fedpilot.types import RoundContext, Update

    def rss_now():
        try:
            with open("/proc/self/statm") as statm:
                return int(statm.read().split()[1]) * resource.getpagesize()
        except OSError:
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def peak_rss():
        # VmHWM is this address space's own high-water mark. ru_maxrss is not: Linux
        # carries the parent's peak across fork/vfork + exec, so a child of a big pytest
        # worker would report the worker's size.
        try:
            with open("/proc/self/status") as status:
                for line in status:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
        scale = 1 if sys.platform == "darwin" else 1024  # macOS reports bytes, Linux KiB
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale

    rule = {{"median": Median(), "krum": Krum(0.2)}}[sys.argv[1]]
    reference = [np.zeros({PARAMS}, np.float32)]
    agg = RuleAggregator(rule)
    agg.begin(reference=reference, ctx=RoundContext("m", 1, 1, 0))
    rng = np.random.default_rng(0)
    before = rss_now()
    for i in range({UPDATES}):
        update = rng.standard_normal({PARAMS}, dtype=np.float32)
        agg.add(Update(f"l{{i:03d}}", [update], 1))
        del update
    result = agg.result()
    assert result[0].shape == ({PARAMS},)
    print(peak_rss() - before)
    """
)


@pytest.mark.skipif(sys.platform == "win32", reason="resource is POSIX-only")
@pytest.mark.parametrize("rule", ["median", "krum"])
def test_extra_peak_rss_stays_far_below_the_rows(rule: str) -> None:
    # One BLAS thread: on a busy shared machine OpenBLAS threads spinning against other
    # load made the Gram matrix 5-30x slower; memory is what is measured here.
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, rule], capture_output=True, text=True, timeout=120, env=env
    )
    assert done.returncode == 0, done.stderr
    extra = int(done.stdout.strip().splitlines()[-1])
    assert extra < LIMIT, (
        f"{rule}: {extra / 1e6:.0f} MB extra for {ROWS_BYTES / 1e6:.0f} MB of rows"
    )
