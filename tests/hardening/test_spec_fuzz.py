"""Fuzz the spec loader: whatever the file holds, it loads or is refused with a
:class:`UserError` (exit 2 at the CLI), within a time and a memory bound, never a
traceback (issue 13, "Done means").

Structure-aware: documents start from a real spec and change its real fields (every
field of the resolved spec, defaults included) to values of the wrong type, huge and
non-finite numbers, unicode, deep nesting and YAML alias bombs, then some are damaged as
text. A sample also goes through `fedpilot spec check` in a subprocess.
"""

from __future__ import annotations

import copy
import resource
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fedpilot.errors import UserError
from fedpilot.spec import load_spec, validate_spec

BASE: dict[str, Any] = {
    "name": "fuzz",
    "seed": 1,
    "task": {"name": "digits-mlp", "params": {"hidden": 16}},
    "data": {"num_learners": 4, "partition": "dirichlet(0.5)"},
    "rounds": 3,
    "sampling": {"fraction": 0.5, "min_learners": 1},
    "local": {"epochs": 1, "lr": 0.05},
    "runtime": {"mode": "local", "workers": 0, "round_timeout": 60},
}
PER_INPUT_SECONDS = 5.0
"""Each input is loaded or refused within this (it takes milliseconds; 0.5 s at worst)."""
MEMORY_GROWTH_BYTES = 1024**3
"""Peak memory the fuzzing may add to the test process (the alias bomb took 13.9 GB)."""
CLI_SAMPLE = 6
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def _paths(value: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    if not isinstance(value, dict) or not value:
        return [prefix] if prefix else []
    out = [prefix] if prefix else []
    for key, child in value.items():
        out += _paths(child, (*prefix, str(key)))
    return out


RESOLVED = validate_spec(BASE).resolved()
FIELDS = sorted(set(_paths(RESOLVED)) | set(_paths(BASE)))
"""Every field of a real spec, sections included."""


def _default(path: tuple[str, ...]) -> Any:
    node: Any = RESOLVED
    for part in path:
        node = node.get(part) if isinstance(node, dict) else None
    return node


def _plausible(current: Any) -> st.SearchStrategy[Any]:
    """A value of the field's own type, often one the spec accepts."""
    if isinstance(current, bool):
        return st.booleans()
    if isinstance(current, int):
        return st.integers(0, 20)
    if isinstance(current, float):
        return st.floats(0.0, 2.0)
    return st.just(current).map(copy.deepcopy)  # a fresh copy: later changes stay in it


def _alias_bomb(levels: int, width: int) -> list[Any]:
    node: list[Any] = ["lol"] * width
    for _ in range(levels):
        node = [node] * width  # one object named `width` times: YAML anchors and aliases
    return node


def _nested(depth: int) -> Any:
    node: Any = 1
    for i in range(depth):
        node = [node] if i % 2 else {"k": node}
    return node


_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
_SCALARS = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.integers(min_value=-5, max_value=200),  # often in range: some documents load
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([float("inf"), float("-inf"), float("nan"), 1e308, -0.0, 5e-324]),
    st.booleans(),
    st.none(),
    _TEXT,
    st.sampled_from(["dirichlet(0.5)", "iid", "fedprox", "local", "ray", "1e3", ".inf"]),
)
VALUES = st.one_of(
    _SCALARS,
    st.recursive(
        _SCALARS,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_TEXT, inner, max_size=4),
        max_leaves=12,
    ),
    st.builds(_nested, st.integers(1, 400)),
    st.builds(_alias_bomb, st.integers(1, 9), st.integers(2, 10)),
    st.integers(0, 150_000).map(lambda n: [0] * n),
    st.integers(0, 300_000).map(lambda n: "x" * n),
)


@st.composite
def documents(draw: st.DrawFn) -> tuple[bytes, list[str]]:
    """A spec file's bytes and ``--set`` overrides."""
    doc: dict[str, Any] = yaml.safe_load(yaml.safe_dump(BASE))
    for _ in range(draw(st.integers(0, 4))):
        path = draw(st.sampled_from(FIELDS))
        node = doc
        for part in path[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        kind = draw(st.integers(0, 9))
        if kind == 0:
            node.pop(path[-1], None)
        elif kind < 5:
            node[path[-1]] = draw(_plausible(_default(path)))
        else:
            node[path[-1]] = draw(VALUES)
    if draw(st.integers(0, 9)) == 0:
        doc[draw(_TEXT)] = draw(VALUES)  # an unknown key
    text = yaml.dump(doc, Dumper=_DUMPER, allow_unicode=draw(st.booleans()))
    data = text.encode()
    damage = draw(st.integers(0, 7))
    if damage == 0:
        data = data[: draw(st.integers(0, len(data)))]
    elif damage == 1:
        at = draw(st.integers(0, len(data)))
        junk = draw(
            st.sampled_from([b"\xff\xfe", b"&a [*a]", b"!!python/object:os.system", b"\t:", b"{["])
        )
        data = data[:at] + junk + data[at:]
    elif damage == 2:
        data = draw(st.sampled_from([b"", b"[]", b"42", b"---\n---\n", b"~", b"- a\n- b\n"]))
    overrides = []
    for _ in range(draw(st.integers(0, 2))):
        path = ".".join(draw(st.sampled_from(FIELDS)))
        value = draw(st.sampled_from(["true", ".inf", "1", "[", "{a: 1}", "&x [*x]", "", "é"]))
        overrides.append(f"{path}={value}")
    return data, overrides


def test_every_spec_loads_or_exits_2_within_bounds(tmp_path: Path) -> None:
    counts: Counter[str] = Counter()
    samples: dict[str, list[tuple[bytes, list[str]]]] = {"loaded": [], "refused": []}
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    path = tmp_path / "spec.yaml"

    @settings(
        max_examples=300,
        deadline=None,  # the bound is checked below, per input
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(documents())
    def load_or_refuse(document: tuple[bytes, list[str]]) -> None:
        data, overrides = document
        path.write_bytes(data)
        started = time.perf_counter()
        try:
            load_spec(path, overrides)
            outcome = "loaded"
        except UserError:
            outcome = "refused"
        took = time.perf_counter() - started
        assert took < PER_INPUT_SECONDS, f"{took:.2f} s for {data[:200]!r}"
        counts["tried"] += 1
        counts[outcome] += 1
        if len(samples[outcome]) < CLI_SAMPLE // 2:
            samples[outcome].append(document)

    load_or_refuse()  # anything but a UserError fails the test, with the input shrunk
    peak_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    assert peak_after - peak_before < MEMORY_GROWTH_BYTES

    for expected, documents_ in samples.items():
        for data, overrides in documents_:
            path.write_bytes(data)
            args = [a for o in overrides for a in ("--set", o)]
            out = subprocess.run(
                [sys.executable, "-m", "fedpilot", "spec", "check", str(path), *args],
                capture_output=True,
                text=True,
                timeout=60,
            )
            counts["cli"] += 1
            assert "Traceback" not in out.stderr, out.stderr
            assert out.returncode == (0 if expected == "loaded" else 2), out.stderr
    print(f"\nspec fuzz: {dict(counts)}")
    assert counts["loaded"] > 0 and counts["refused"] > 0
