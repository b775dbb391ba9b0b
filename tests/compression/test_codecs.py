"""Each codec round-trips within its stated error, deterministically, and a malformed
payload is refused with a message, never decoded into something else."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fedpilot.compression import Compression, Half, Int8, TopK, decode_weights, encode_weights
from fedpilot.types import Reply, RoundContext, weights_nbytes

FLOATS = hnp.arrays(
    np.float32,
    hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=40),
    elements=st.floats(-1e4, 1e4, width=32),
)


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


@settings(max_examples=60, deadline=None)
@given(FLOATS)
def test_fp16_relative_error_is_at_most_2_to_the_minus_11(x: np.ndarray) -> None:
    codec = Half()
    y = codec.decode(codec.encode(x, rng=rng()), shape=x.shape)
    assert y.dtype == np.float32 and y.shape == x.shape
    # 2⁻¹¹ relative in fp16's normal range; below it, half of the smallest subnormal step.
    assert np.all(np.abs(y - x) <= np.abs(x) * 2.0**-11 + 2.0**-25)


@settings(max_examples=60, deadline=None)
@given(FLOATS, st.integers(0, 2**32 - 1))
def test_int8_error_is_below_one_step_and_the_same_seed_gives_the_same_bytes(
    x: np.ndarray, seed: int
) -> None:
    codec = Int8()
    q, params = codec.encode(x, rng=rng(seed))
    assert q.dtype == np.int8 and params.dtype == np.float32 and params.shape == (2,)
    y = codec.decode([q, params], shape=x.shape)
    step = (float(x.max()) - float(x.min())) / 255
    assert np.all(np.abs(y - x) <= step * (1 + 1e-5) + 1e-6 * float(np.abs(x).max()) + 1e-30)
    again = codec.encode(x, rng=rng(seed))
    assert np.array_equal(again[0], q) and np.array_equal(again[1], params)


def test_int8_stochastic_rounding_is_unbiased() -> None:
    x = np.linspace(-1, 1, 1000, dtype=np.float32) ** 3
    codec = Int8()
    mean = np.mean(
        [codec.decode(codec.encode(x, rng=rng(s)), shape=x.shape) for s in range(400)], axis=0
    )
    step = 2 / 255
    # Nearest rounding would be off by up to step/2; 400 draws shrink the noise ~20x.
    assert np.max(np.abs(mean - x)) < step / 6


def test_int8_keeps_a_constant_tensor_exactly() -> None:
    x = np.full((3, 4), 0.25, np.float32)
    codec = Int8()
    np.testing.assert_array_equal(codec.decode(codec.encode(x, rng=rng()), shape=x.shape), x)


@settings(max_examples=60, deadline=None)
@given(FLOATS, st.sampled_from([0.01, 0.1, 0.5, 1.0]))
def test_topk_keeps_exactly_the_largest_entries(x: np.ndarray, fraction: float) -> None:
    codec = TopK(fraction)
    index, values = codec.encode(x, rng=rng())
    k = max(1, math.ceil(fraction * x.size))
    assert index.dtype == np.int32 and values.dtype == np.float32 and index.size == min(k, x.size)
    y = codec.decode([index, values], shape=x.shape)
    flat, got = x.ravel(), y.ravel()
    kept = np.zeros(x.size, bool)
    kept[index] = True
    np.testing.assert_array_equal(got[kept], flat[kept])  # sent entries are exact
    assert np.all(got[~kept] == 0)
    if (~kept).any():  # nothing dropped is larger than anything sent
        assert np.abs(flat[~kept]).max() <= np.abs(flat[kept]).min()


def test_payload_sizes_match_the_benchmark_targets() -> None:
    weights = [np.ones((100, 100), np.float32), np.ones(100, np.float32)]
    plain = weights_nbytes(weights)
    for codec, share in ((Half(), 0.5), (Int8(), 0.25), (TopK(0.01), 0.02)):
        wire = encode_weights(codec, weights, rng=rng())
        # Per tensor: the share, plus int8's scale and zero point, plus top-k's one entry
        # for a small tensor.
        assert weights_nbytes(wire) <= share * plain + 16, codec.name
        decoded = decode_weights(codec, wire, weights)
        assert [d.shape for d in decoded] == [w.shape for w in weights]


def test_an_integer_tensor_travels_as_it_is() -> None:
    weights = [np.arange(6, dtype=np.float32).reshape(2, 3), np.array([7], np.int64)]
    wire = encode_weights(Int8(), weights, rng=rng())
    assert len(wire) == 3 and wire[2].dtype == np.int64
    np.testing.assert_array_equal(decode_weights(Int8(), wire, weights)[1], [7])


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ([np.zeros((2, 3), np.int8)], "payload of 1 arrays, expected 2"),
        ([np.zeros((3, 2), np.int8), np.ones(2, np.float32)], r"expected int8\[2, 3\]"),
        ([np.zeros((2, 3), np.int16), np.ones(2, np.float32)], r"got int16"),
    ],
)
def test_a_malformed_payload_is_refused(payload: list[np.ndarray], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        decode_weights(Int8(), payload, [np.zeros((2, 3), np.float32)])


def test_topk_refuses_indices_outside_the_tensor() -> None:
    with pytest.raises(ValueError, match="index outside"):
        TopK(0.5).decode([np.array([9], np.int32), np.ones(1, np.float32)], shape=(2, 3))


def test_the_server_half_decodes_the_model_plus_delta_and_refuses_a_bad_reply() -> None:
    transform = Compression("fp16")
    reference = [np.full(4, 1.0, np.float32)]
    ctx = RoundContext(run_id="r", round=1, total_rounds=1, seed=0)
    good = Reply("a", "train", weights=[np.full(4, 0.5, np.float16)], num_examples=3)
    np.testing.assert_array_equal(
        transform.on_reply(good, reference=reference, ctx=ctx).weights[0], np.full(4, 1.5)
    )
    bad = Reply("a", "train", weights=[np.full(4, 0.5, np.float32)], num_examples=3)
    with pytest.raises(ValueError, match="expected float16"):
        transform.on_reply(bad, reference=reference, ctx=ctx)


@pytest.mark.parametrize("value", [0.98, -3.7e3, 1e-20, 0.0])
def test_int8_round_trips_a_constant_tensor_exactly(value: float) -> None:
    x = np.full((3, 2), value, np.float32)
    codec = Int8()
    y = codec.decode(codec.encode(x, rng=rng()), shape=x.shape)
    np.testing.assert_array_equal(y, x)
