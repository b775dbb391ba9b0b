"""How many threads torch may use per process.

Small models train many times faster on one thread than on two here (thread start-up
and synchronisation dominate), and a pool of N learner processes on N cores must not
oversubscribe them, so fedpilot sets this from ``runtime.torch_threads``.
"""

from __future__ import annotations

import os
import sys

THREADS_ENV = "FEDPILOT_TORCH_THREADS"


def limit_torch_threads(threads: int) -> None:
    """Apply to this process now (if torch is loaded) and to processes it starts later."""
    os.environ[THREADS_ENV] = str(threads)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(threads)
