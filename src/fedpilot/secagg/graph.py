"""The sparse neighbour graph of SecAgg+ and the small wire encodings the protocol uses."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from fedpilot.types import LearnerId, derive_rng


def default_degree(num_learners: int) -> int:
    """k ~ log n: ``2·ceil(log2 n)`` neighbours (at most everyone else)."""
    return min(num_learners - 1, 2 * math.ceil(math.log2(max(2, num_learners))))


def neighbour_graph(
    learners: Sequence[LearnerId], degree: int, *, seed: int, round_: int
) -> dict[LearnerId, list[LearnerId]]:
    """A symmetric graph where each learner has about ``degree`` neighbours: the learners
    in a round-seeded random order on a ring, each linked to the ``ceil(degree/2)`` next
    on either side (a Harary graph, so it stays connected). Public: the server builds
    it and tells every learner its neighbours, so both ends of an edge agree."""
    order = sorted(learners)
    n = len(order)
    derive_rng(seed, round_, "secagg-graph").shuffle(order)
    reach = min(math.ceil(min(degree, n - 1) / 2), n // 2)
    graph: dict[LearnerId, set[LearnerId]] = {u: set() for u in order}
    for i, u in enumerate(order):
        for step in range(1, reach + 1):
            v = order[(i + step) % n]
            if v != u:
                graph[u].add(v)
                graph[v].add(u)
    return {u: sorted(vs) for u, vs in graph.items()}


def pack(value: Any) -> npt.NDArray[Any]:
    """JSON as a uint8 array: exchanges carry array lists both ways."""
    return np.frombuffer(json.dumps(value, sort_keys=True).encode(), dtype=np.uint8).copy()


def unpack(array: npt.NDArray[Any]) -> Any:
    return json.loads(np.asarray(array, dtype=np.uint8).tobytes().decode())


def as_bytes(array: npt.NDArray[Any]) -> bytes:
    return np.asarray(array, dtype=np.uint8).tobytes()


def from_bytes(data: bytes) -> npt.NDArray[Any]:
    return np.frombuffer(data, dtype=np.uint8).copy()
