"""A learner's own array data on disk: one .npz file, or a directory of .npy files.

Both layouts hold the same four arrays under the same names; the directory is the .npz
file unzipped (an .npz *is* a zip of ``<name>.npy`` members):

- ``x_train``, ``y_train``: required, with equal first axes (one row per example);
- ``x_test``, ``y_test``: optional, the learner's held-out split (both or neither).

A directory may hold other files too; only these four names are read.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt

from fedpilot.data._base import ArrayDataset, LearnerData
from fedpilot.errors import TaskError

__all__ = ["ARRAY_NAMES", "read_array_data"]

ARRAY_NAMES = ("x_train", "y_train", "x_test", "y_test")
"""The arrays a learner's data file or directory holds (the ``_test`` pair optional)."""

Arrays = dict[str, npt.NDArray[np.generic]]


def read_array_data(path: Path) -> LearnerData[ArrayDataset]:
    """A learner's arrays from an .npz file or a directory of ``<name>.npy`` files.

    Args:
        path: An .npz file (any other existing file is read as one too) or a directory.

    Returns:
        The learner's train split and, when present, its test split.

    Raises:
        TaskError: The path does not exist, cannot be read, or lacks ``x_train`` or
            ``y_train``; a directory holds only one of ``x_test``/``y_test``; or an
            array pair has unequal lengths. The message names the path.
    """
    if path.is_dir():
        return _from_directory(path)
    if not path.exists():
        raise TaskError(
            f"the learner's data {str(path)!r} does not exist: give an .npz file or a "
            "directory holding x_train.npy and y_train.npy"
        )
    return _from_npz(path)


def _from_npz(path: Path) -> LearnerData[ArrayDataset]:
    try:
        loaded = np.load(path)
    except (OSError, ValueError) as exc:
        raise TaskError(f"cannot read the learner's data file {str(path)!r}: {exc}") from exc
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise TaskError(
            f"cannot read the learner's data file {str(path)!r}: it is a single array, "
            "not an .npz file of named arrays"
        )
    with loaded as npz:
        arrays: Arrays = {key: npz[key] for key in npz.files}
    missing = [key for key in ("x_train", "y_train") if key not in arrays]
    if missing:
        raise TaskError(
            f"the learner's data file {str(path)!r} must hold arrays x_train and y_train "
            f"(and optionally x_test, y_test), missing {missing}; it has {sorted(arrays)}"
        )
    # As before directories existed: a lone x_test or y_test is ignored.
    test = ("x_test", "y_test") if "x_test" in arrays and "y_test" in arrays else None
    return _learner_data(path, arrays, test)


def _from_directory(path: Path) -> LearnerData[ArrayDataset]:
    present = {name for name in ARRAY_NAMES if (path / f"{name}.npy").is_file()}
    missing = [f"{name}.npy" for name in ("x_train", "y_train") if name not in present]
    if missing:
        found = sorted(p.name for p in path.iterdir())[:10]
        raise TaskError(
            f"the learner's data directory {str(path)!r} must hold x_train.npy and "
            f"y_train.npy (and optionally x_test.npy, y_test.npy), missing {missing}; "
            f"it has {found or 'no files'}"
        )
    tests = present & {"x_test", "y_test"}
    if len(tests) == 1:
        (alone,) = tests
        raise TaskError(
            f"the learner's data directory {str(path)!r} holds {alone}.npy without its "
            f"pair: give both x_test.npy and y_test.npy, or neither"
        )
    arrays: Arrays = {}
    for name in sorted(present):
        file = path / f"{name}.npy"
        try:
            arrays[name] = np.load(file, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise TaskError(f"cannot read the learner's data file {str(file)!r}: {exc}") from exc
    return _learner_data(path, arrays, ("x_test", "y_test") if tests else None)


def _learner_data(
    path: Path, arrays: Arrays, test: tuple[str, str] | None
) -> LearnerData[ArrayDataset]:
    pairs = [("x_train", "y_train"), *([test] if test else [])]
    for x, y in pairs:
        if len(arrays[x]) != len(arrays[y]):
            raise TaskError(
                f"the learner's data {str(path)!r}: {x} and {y} must have equal lengths, "
                f"got {len(arrays[x])} and {len(arrays[y])}"
            )
    train = ArrayDataset(arrays["x_train"], arrays["y_train"])
    held_out = ArrayDataset(arrays[test[0]], arrays[test[1]]) if test else None
    return LearnerData(train=train, test=held_out)
