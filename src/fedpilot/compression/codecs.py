"""Codecs: one tensor in, the arrays that go on the wire out, and back.

A codec encodes each tensor of an update's delta on its own, into a fixed number of
arrays (:attr:`Codec.parts`), so a whole update is a flat list of numpy arrays that every
fleet already carries (an ArrayRecord over Flower, a pickle in the process pool) and that
``sys.bytes_sent`` counts as it is.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from fedpilot.registry import Registry
from fedpilot.types import Weights

Array = npt.NDArray[Any]


class Codec(ABC):
    """Encodes one float tensor into :attr:`parts` arrays; :meth:`decode` undoes it within
    the codec's stated error."""

    name: ClassVar[str] = ""
    parts: ClassVar[int] = 1
    """Arrays on the wire per tensor."""

    @abstractmethod
    def encode(self, array: Array, *, rng: np.random.Generator) -> list[np.ndarray]:
        """``array``'s wire form; ``rng`` drives any randomness (stochastic rounding)."""

    @abstractmethod
    def decode(self, payload: Sequence[np.ndarray], *, shape: tuple[int, ...]) -> Array:
        """The float32 tensor of ``shape`` that ``payload`` stands for.

        Raises:
            ValueError: ``payload`` is not this codec's wire form of such a tensor.
        """


CODECS: Registry[Codec] = Registry("codec", Codec, field="compression.codec")


@CODECS.register("fp16")
class Half(Codec):
    """IEEE half precision: relative error ≤ 2⁻¹¹ within fp16's normal range (|x| up to
    65504; beyond it a value becomes infinite and the server refuses the update)."""

    name = "fp16"

    def encode(self, array: Array, *, rng: np.random.Generator) -> list[np.ndarray]:
        del rng
        with np.errstate(over="ignore"):
            return [np.asarray(array).astype(np.float16)]

    def decode(self, payload: Sequence[np.ndarray], *, shape: tuple[int, ...]) -> Array:
        (half,) = _parts(payload, 1, self.name)
        _expect(half, np.float16, shape, self.name)
        return half.astype(np.float32)


@CODECS.register("int8")
class Int8(Codec):
    """Affine 8-bit quantization per tensor: ``x ≈ scale · (q − zero_point)`` with
    ``scale = (max − min) / 255``; stochastic rounding makes it unbiased, and the error
    is below one step (``scale``) plus float32 rounding."""

    name = "int8"
    parts = 2

    def encode(self, array: Array, *, rng: np.random.Generator) -> list[np.ndarray]:
        x = np.asarray(array, np.float64)
        lo = float(x.min()) if x.size else 0.0
        hi = float(x.max()) if x.size else 0.0
        scale = (hi - lo) / 255.0
        if scale == 0.0 or not math.isfinite(scale):
            # A constant (or empty) tensor: every q is the lowest level. A scale of |lo|
            # keeps the zero point a small integer, exact in float32 (with 1.0 it would be
            # -128 - lo, rounded to float32's step at that size).
            scale = abs(lo) if lo != 0.0 and math.isfinite(lo) else 1.0
        levels = (x - lo) / scale
        floor = np.floor(levels)
        up = rng.random(x.shape) < (levels - floor)  # round up with the fractional part
        q = np.clip(floor + up, 0, 255) - 128
        zero_point = -128.0 - lo / scale
        return [q.astype(np.int8), np.array([scale, zero_point], np.float64).astype(np.float32)]

    def decode(self, payload: Sequence[np.ndarray], *, shape: tuple[int, ...]) -> Array:
        q, params = _parts(payload, 2, self.name)
        _expect(q, np.int8, shape, self.name)
        _expect(params, np.float32, (2,), self.name)
        scale, zero_point = (float(v) for v in params)
        return ((q.astype(np.float64) - zero_point) * scale).astype(np.float32)


@CODECS.register("topk")
class TopK(Codec):
    """The ``fraction`` largest-magnitude entries of each tensor (at least one) as int32
    indices into the flat tensor and float32 values; the rest are sent as zeros. Pair it
    with error feedback: alone it is biased."""

    name = "topk"
    parts = 2

    def __init__(self, fraction: float = 0.01) -> None:
        if not 0 < fraction <= 1:
            raise ValueError(f"fraction must be in (0, 1], got {fraction}")
        self.fraction = fraction

    def kept(self, size: int) -> int:
        return min(size, max(1, math.ceil(self.fraction * size)))

    def encode(self, array: Array, *, rng: np.random.Generator) -> list[np.ndarray]:
        del rng
        flat = np.asarray(array, np.float32).ravel()
        k = self.kept(flat.size)
        if k == flat.size:
            index = np.arange(flat.size)
        else:
            # Stable order by magnitude, so ties pick the same coordinates everywhere.
            index = np.sort(np.argsort(-np.abs(flat), kind="stable")[:k])
        return [index.astype(np.int32), flat[index]]

    def decode(self, payload: Sequence[np.ndarray], *, shape: tuple[int, ...]) -> Array:
        index, values = _parts(payload, 2, self.name)
        size = math.prod(shape)
        if index.dtype != np.int32 or values.dtype != np.float32 or index.ndim != 1:
            raise ValueError(f"{self.name}: expected int32 indices and float32 values")
        if index.shape != values.shape or index.size > size:
            raise ValueError(f"{self.name}: {index.size} indices for {values.size} values")
        if index.size and (index.min() < 0 or index.max() >= size):
            raise ValueError(f"{self.name}: an index outside a tensor of {size} entries")
        flat = np.zeros(size, np.float32)
        flat[index] = values
        return flat.reshape(shape)


def encode_weights(codec: Codec, weights: Weights, *, rng: np.random.Generator) -> Weights:
    """Every float tensor of ``weights`` encoded, as one flat list of wire arrays; any
    other tensor (an integer counter) goes as it is, one array."""
    wire: Weights = []
    for array in weights:
        wire.extend(codec.encode(array, rng=rng) if _floating(array) else [array])
    return wire


def decode_weights(codec: Codec, payload: Sequence[np.ndarray], like: Weights) -> Weights:
    """:func:`encode_weights` undone, one tensor per tensor of ``like`` (its shapes).

    Raises:
        ValueError: ``payload`` does not hold ``len(like)`` tensors in ``codec``'s form.
    """
    sizes = [codec.parts if _floating(ref) else 1 for ref in like]
    if len(payload) != sum(sizes):
        raise ValueError(
            f"{codec.name} payload of {len(payload)} arrays, expected {sum(sizes)} "
            f"for {len(like)} tensors"
        )
    decoded: Weights = []
    start = 0
    for ref, size in zip(like, sizes, strict=True):
        parts = payload[start : start + size]
        start += size
        if _floating(ref):
            decoded.append(codec.decode(parts, shape=tuple(np.shape(ref))))
        else:
            _expect(np.asarray(parts[0]), np.asarray(ref).dtype.type, np.shape(ref), "raw")
            decoded.append(np.asarray(parts[0]))
    return decoded


def _floating(array: np.ndarray) -> bool:
    return bool(np.issubdtype(np.asarray(array).dtype, np.floating))


def _parts(payload: Sequence[np.ndarray], count: int, name: str) -> list[np.ndarray]:
    if len(payload) != count:
        raise ValueError(f"{name}: {len(payload)} arrays per tensor, expected {count}")
    return [np.asarray(p) for p in payload]


def _expect(array: np.ndarray, dtype: type, shape: tuple[int, ...], name: str) -> None:
    if array.dtype != dtype or array.shape != tuple(shape):
        raise ValueError(
            f"{name}: expected {np.dtype(dtype).name}{list(shape)}, "
            f"got {array.dtype.name}{list(array.shape)}"
        )


__all__ = ["CODECS", "Codec", "Half", "Int8", "TopK", "decode_weights", "encode_weights"]
