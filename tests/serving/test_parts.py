"""The server's pure parts: what MODEL and --canary mean, request checks, routing."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fedpilot.errors import UserError
from fedpilot.serving import BadInput, Canary, InputSpec, ModelRef, Router, Routes
from fedpilot.serving.routing import Route, key_bucket

SPEC = InputSpec(np.dtype("float32"), (-1, 4))


def _body(value: Any) -> bytes:
    return json.dumps(value).encode()


@pytest.mark.parametrize(
    ("text", "ref"),
    [
        ("digits", ModelRef("digits", alias="champion")),
        ("digits@challenger", ModelRef("digits", alias="challenger")),
        ("digits/3", ModelRef("digits", version="3")),
        ("team/digits@champion", ModelRef("team/digits", alias="champion")),
        ("team/digits/007", ModelRef("team/digits", version="7")),
    ],
)
def test_model_references(text: str, ref: ModelRef) -> None:
    assert ModelRef.parse(text) == ref


@pytest.mark.parametrize("text", ["", "@champion", "digits@", "digits@a b", "digits/0", "digits/x"])
def test_bad_model_references_are_user_errors(text: str) -> None:
    with pytest.raises(UserError, match="MODEL"):
        ModelRef.parse(text)


def test_canary_shares() -> None:
    assert Canary.parse("challenger=10") == Canary("challenger", 10.0)
    assert Canary.parse("b=0.5").basis_points == 50
    for bad in ["challenger", "=10", "challenger=0", "challenger=101", "c=nan", "c=ten"]:
        with pytest.raises(UserError, match="--canary must be ALIAS=PERCENT"):
            Canary.parse(bad)


def test_a_good_batch_becomes_one_array_of_the_signature_dtype() -> None:
    batch = SPEC.parse(_body({"inputs": [[1, 2, 3, 4], [0.5, -1, 1e30, 0]]}), max_rows=2)
    assert batch.dtype == np.float32 and batch.shape == (2, 4)
    integers = InputSpec(np.dtype("int64"), (-1, 2))
    assert integers.parse(_body({"inputs": [[1, 2]]}), max_rows=1).dtype == np.int64


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        (b"{", 400, "not valid JSON"),
        (b'{"inputs": [[Infinity, 1, 2, 3]]}', 400, "not valid JSON"),
        (_body({"inputs": [[1, 2, 3, 4]] * 3}), 413, "3 rows; at most 2"),
        (_body({"inputs": [[1, 2, 3]]}), 422, "inputs[0] has 3 values, not 4"),
        (_body({"inputs": [[1, 2, 3, [4]]]}), 422, "inputs[0][3] is a nested value"),
        (_body({"inputs": [[1, 2, 3, {"a": 1}]]}), 422, "inputs[0][3] is {"),
        (_body({"inputs": [[1, 2, 3, False]]}), 422, "inputs[0][3] is false"),
        (_body({"inputs": "1,2,3,4"}), 422, "non-empty list of rows"),
        (_body({"inputs": [[1, 2, 3, 1e39]]}), 422, "too large for float32"),
    ],
)
def test_bad_batches_name_the_problem(body: bytes, status: int, words: str) -> None:
    with pytest.raises(BadInput) as caught:
        SPEC.parse(body, max_rows=2)
    assert caught.value.status == status and words in caught.value.message


def test_integer_inputs_refuse_fractions_and_overflow() -> None:
    spec = InputSpec(np.dtype("int32"), (-1, 2))
    with pytest.raises(BadInput, match=r"integers only .*inputs\[0\]\[1\] is 2.5"):
        spec.parse(_body({"inputs": [[1, 2.5]]}), max_rows=1)
    with pytest.raises(BadInput, match="out of int32's range"):
        spec.parse(_body({"inputs": [[1, 2**40]]}), max_rows=1)


def test_a_word_true_inside_a_string_elsewhere_does_not_refuse_numbers() -> None:
    body = _body({"inputs": [[1, 2, 3, 4]], "note": "true or false"})
    assert SPEC.parse(body, max_rows=1).shape == (1, 4)


def _routes(share_bp: int) -> Routes:
    def route(version: str, role: str) -> Route:
        return Route(model=_Stub(version), alias=role, role=role)  # type: ignore[arg-type]

    return Routes(route("1", "primary"), route("2", "canary"), basis_points=share_bp)


class _Stub:
    def __init__(self, version: str) -> None:
        self.version = version


def test_keyless_requests_get_exactly_the_share_in_a_fixed_order() -> None:
    routes, router = _routes(1000), Router()
    picks = [router.pick(routes, None).role for _ in range(1000)]
    assert Counter(picks) == {"primary": 900, "canary": 100}
    # Evenly spread: one canary request in every ten.
    assert all(picks[i : i + 10].count("canary") == 1 for i in range(0, 1000, 10))


@given(st.text(min_size=1, max_size=40))
def test_a_key_always_lands_on_the_same_side(key: str) -> None:
    routes = _routes(2500)
    sides = {Router().pick(routes, key).role for _ in range(3)}
    assert len(sides) == 1
    assert (sides.pop() == "canary") == (key_bucket(key) < 2500)


def test_keys_spread_at_the_share() -> None:
    routes, router = _routes(1000), Router()
    canary = sum(router.pick(routes, f"caller-{i}").role == "canary" for i in range(20_000))
    assert 0.09 <= canary / 20_000 <= 0.11


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=40,
)


@given(JSON, st.sampled_from(["float32", "int64"]))
def test_any_json_is_a_batch_of_the_signature_or_a_client_error(value: Any, dtype: str) -> None:
    spec = InputSpec(np.dtype(dtype), (-1, 2))
    # json.dumps writes infinities as `Infinity`: strict JSON parsers refuse them (400).
    body = json.dumps({"inputs": value}).encode()
    try:
        batch = spec.parse(body, max_rows=4)
    except BadInput as exc:
        assert 400 <= exc.status < 500 and exc.message
    else:
        assert batch.dtype == spec.dtype and batch.ndim == 2 and batch.shape[1] == 2
        assert np.all(np.isfinite(batch))
