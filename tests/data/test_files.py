"""A learner's own arrays on disk: an .npz file, or the same arrays as a directory of .npy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fedpilot.data import ArrayDataset, Dataset, read_array_data
from fedpilot.errors import TaskError


def _arrays(n_train: int = 12, n_test: int = 5) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    return {
        "x_train": rng.normal(size=(n_train, 3)).astype(np.float32),
        "y_train": rng.integers(0, 4, n_train),
        "x_test": rng.normal(size=(n_test, 3)).astype(np.float32),
        "y_test": rng.integers(0, 4, n_test),
    }


def _as_directory(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    path.mkdir()
    for name, array in arrays.items():
        np.save(path / f"{name}.npy", array)
    return path


def _same(a: ArrayDataset | None, b: ArrayDataset | None) -> None:
    assert a is not None and b is not None
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.y, b.y)
    assert a.x.dtype == b.x.dtype and a.y.dtype == b.y.dtype


def test_the_npz_file_reads_as_before(tmp_path: Path) -> None:
    arrays = _arrays()
    np.savez(tmp_path / "mine.npz", **arrays)
    data = read_array_data(tmp_path / "mine.npz")
    _same(data.train, ArrayDataset(arrays["x_train"], arrays["y_train"]))
    _same(data.test, ArrayDataset(arrays["x_test"], arrays["y_test"]))
    # Without the test pair, or with half of it, there is no local test split.
    np.savez(tmp_path / "half.npz", x_train=arrays["x_train"], y_train=arrays["y_train"], x_test=1)
    assert read_array_data(tmp_path / "half.npz").test is None


def test_a_directory_is_the_npz_file_unzipped(tmp_path: Path) -> None:
    arrays = _arrays()
    np.savez(tmp_path / "mine.npz", **arrays)
    directory = _as_directory(tmp_path / "mine", arrays)
    (directory / "README.txt").write_text("other files are ignored")
    from_file, from_dir = read_array_data(tmp_path / "mine.npz"), read_array_data(directory)
    _same(from_dir.train, from_file.train)
    _same(from_dir.test, from_file.test)
    assert isinstance(from_dir.train, Dataset) and len(from_dir.train) == 12


def test_a_directory_without_the_test_pair_has_no_test_split(tmp_path: Path) -> None:
    arrays = _arrays()
    del arrays["x_test"], arrays["y_test"]
    assert read_array_data(_as_directory(tmp_path / "d", arrays)).test is None


@pytest.mark.parametrize(
    ("drop", "message"),
    [
        (["y_train"], r"missing \['y_train\.npy'\]"),
        (["x_train", "y_train"], r"missing \['x_train\.npy', 'y_train\.npy'\]"),
        (["y_test"], r"x_test\.npy without its pair"),
    ],
)
def test_a_directory_missing_arrays_says_what_and_where(
    tmp_path: Path, drop: list[str], message: str
) -> None:
    arrays = {k: v for k, v in _arrays().items() if k not in drop}
    directory = _as_directory(tmp_path / "learner-7", arrays)
    with pytest.raises(TaskError, match=message) as info:
        read_array_data(directory)
    assert str(directory) in str(info.value)


def test_unequal_lengths_and_missing_paths_are_task_errors(tmp_path: Path) -> None:
    arrays = _arrays()
    arrays["y_train"] = arrays["y_train"][:-1]
    with pytest.raises(TaskError, match=r"x_train and y_train must have equal lengths"):
        read_array_data(_as_directory(tmp_path / "d", arrays))
    with pytest.raises(TaskError, match=r"does not exist.*x_train\.npy"):
        read_array_data(tmp_path / "nowhere")
    np.save(tmp_path / "plain.npy", np.zeros(3))
    with pytest.raises(TaskError, match=r"cannot read the learner's data file"):
        read_array_data(tmp_path / "plain.npy")
    np.savez(tmp_path / "wrong.npz", x=np.zeros(3))
    with pytest.raises(TaskError, match=r"missing \['x_train', 'y_train'\]; it has \['x'\]"):
        read_array_data(tmp_path / "wrong.npz")
