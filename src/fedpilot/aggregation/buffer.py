"""A round's update deltas on disk, read back in column chunks with bounded memory.

Robust rules need every update of a round at once, which in memory would cost
``n × model`` bytes. :class:`UpdateBuffer` writes each accepted update's delta
(update − reference, floating arrays flattened and concatenated, float32) as one row
of an unnamed temporary file; :class:`BufferRows` reads column chunks of chosen rows
into one preallocated ``(rows, chunk)`` array with ``os.preadv``. Page-cache pages are
not the process's memory, so RSS stays near ``rows × chunk × 4`` bytes. (A whole-file
``np.memmap`` would not: every page it touches is counted in RSS until unmapped.)
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from fedpilot.aggregation.rules._base import FloatRows, Vector
from fedpilot.types import LearnerId, Weights

_ITEM = 4  # bytes per float32 delta value
_STEP = 1 << 20
"""Elements of one array converted and written at a time (bounds add()'s temporaries)."""


@dataclass(frozen=True)
class Slot:
    """Where array ``index`` of a model goes: a column range of the row, or (integer and
    boolean arrays, e.g. BatchNorm's ``num_batches_tracked``) kept aside in memory."""

    index: int
    shape: tuple[int, ...]
    dtype: np.dtype[np.generic]
    offset: int
    size: int

    @property
    def floating(self) -> bool:
        return self.dtype.kind == "f"


def layout(reference: Weights) -> tuple[list[Slot], int]:
    """The slots of ``reference``'s arrays and the row length (floating parameters).

    Raises:
        ValueError: for a dtype that is neither floating, integer nor boolean.
    """
    slots: list[Slot] = []
    offset = 0
    for index, array in enumerate(reference):
        if array.dtype.kind not in "fiub":
            raise ValueError(
                f"reference array {index} has dtype {array.dtype}; buffered aggregation "
                "supports floating, integer and boolean arrays"
            )
        floating = array.dtype.kind == "f"
        slots.append(Slot(index, array.shape, array.dtype, offset if floating else -1, array.size))
        if floating:
            offset += array.size
    return slots, offset


class UpdateBuffer:
    """The rows of one round: appended as updates arrive, read in column chunks.

    Args:
        reference: The current global model; deltas are taken against it.
        workdir: Folder of the temporary file; the system's temporary folder when None.
            The file has no name (where the OS allows) and is gone once closed.
    """

    def __init__(self, reference: Weights, *, workdir: Path | None = None) -> None:
        self.slots, self.dim = layout(reference)
        self._reference = [np.ravel(a) for a in reference]
        # Held open for the round and closed by close(), so no context manager here.
        self._file = tempfile.TemporaryFile(  # noqa: SIM115
            prefix="fedpilot-updates-", dir=workdir, buffering=0
        )
        self._fd = self._file.fileno()
        self.rows = 0
        self.discrete: list[list[npt.NDArray[np.generic]]] = []
        """Per row, copies of the update's integer and boolean arrays."""

    def append(self, learner: LearnerId, weights: Weights) -> float:
        """Write ``weights − reference`` as the next row; return the delta's L2 norm.

        Raises:
            ValueError: on a wrong number of arrays, a wrong shape or a non-numeric dtype;
                nothing is written then.
        """
        if len(weights) != len(self.slots):
            raise ValueError(
                f"update from {learner} has {len(weights)} arrays, expected {len(self.slots)}"
            )
        for slot, array in zip(self.slots, weights, strict=True):
            if np.shape(array) != slot.shape:
                raise ValueError(
                    f"update from {learner}: array {slot.index} has shape "
                    f"{np.shape(array)}, expected {slot.shape}"
                )
            if np.asarray(array).dtype.kind not in "fiub":
                raise ValueError(
                    f"update from {learner}: array {slot.index} has dtype "
                    f"{np.asarray(array).dtype}, expected a numeric dtype"
                )
        row_start = self.rows * self.dim * _ITEM
        squared = 0.0
        discrete: list[npt.NDArray[np.generic]] = []
        for slot, array in zip(self.slots, weights, strict=True):
            if not slot.floating:
                discrete.append(np.array(array, copy=True))
                continue
            flat = np.ravel(array)
            ref = self._reference[slot.index]
            work = np.promote_types(slot.dtype, np.float32)
            for start in range(0, slot.size, _STEP):
                stop = min(start + _STEP, slot.size)
                delta = np.subtract(flat[start:stop], ref[start:stop], dtype=work)
                delta32 = delta.astype(np.float32, copy=False)
                # float64 accumulation without a float64 copy of the slice.
                squared += float(np.einsum("i,i->", delta32, delta32, dtype=np.float64))
                _write_all(self._fd, delta32, row_start + (slot.offset + start) * _ITEM)
        self.discrete.append(discrete)
        self.rows += 1
        return float(np.sqrt(squared))

    def read(self, rows: Sequence[int], start: int, block: FloatRows) -> None:
        """Fill ``block`` (``len(rows) × width``, C-contiguous) with columns
        ``start : start + width`` of ``rows``."""
        for i, row in enumerate(rows):
            _read_into(self._fd, block[i], (row * self.dim + start) * _ITEM)

    def close(self) -> None:
        """Delete the file (idempotent)."""
        self._file.close()
        self.discrete = []


def _write_all(fd: int, values: FloatRows, offset: int) -> None:
    view = np.ascontiguousarray(values).data.cast("B")
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written


def _read_into(fd: int, target: FloatRows, offset: int) -> None:
    view = target.data.cast("B")
    while view:
        got = os.preadv(fd, [view], offset)
        if got == 0:
            raise OSError(f"update buffer ended early at byte {offset}")
        view, offset = view[got:], offset + got


class BufferRows:
    """The included rows of a buffer, in canonical order, as a rule's :class:`Rows`.

    Args:
        buffer: Where the rows live.
        file_rows: The buffer rows, in canonical (learner id) order.
        weights: Their aggregation weights.
        scales: Per row factor applied on read (norm bounding); None for none.
        chunk_size: Columns per chunk.
    """

    def __init__(
        self,
        buffer: UpdateBuffer,
        file_rows: Sequence[int],
        weights: Vector,
        scales: npt.NDArray[np.float32] | None,
        chunk_size: int,
    ) -> None:
        self._buffer = buffer
        self._file_rows = list(file_rows)
        self._weights = weights
        self._scales = scales
        self._chunk = max(1, chunk_size)

    @property
    def n(self) -> int:
        return len(self._file_rows)

    @property
    def dim(self) -> int:
        return self._buffer.dim

    @property
    def weights(self) -> Vector:
        return self._weights

    def chunks(self, select: Sequence[int] | None = None) -> Iterator[tuple[slice, FloatRows]]:
        picked = list(range(self.n)) if select is None else [int(i) for i in select]
        file_rows = [self._file_rows[i] for i in picked]
        scaled: list[tuple[int, np.float32]] = []
        if self._scales is not None:
            scaled = [(k, self._scales[i]) for k, i in enumerate(picked) if self._scales[i] < 1]
        dim = self.dim
        storage = np.empty(len(picked) * min(self._chunk, dim), dtype=np.float32)
        for start in range(0, dim, self._chunk):
            width = min(self._chunk, dim - start)
            block = storage[: len(picked) * width].reshape(len(picked), width)
            self._buffer.read(file_rows, start, block)
            for k, scale in scaled:
                block[k] *= scale
            yield slice(start, start + width), block
