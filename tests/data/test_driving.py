"""The synthetic driving set: deterministic, imbalanced, non-IID by region, valid YOLO files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clitools import fedpilot
from fedpilot.data.driving import CLASS_NAMES, REGIONS, make_driving
from fedpilot.data.yolo import YoloDataset, read_yolo_dataset
from fedpilot.errors import UserError


@pytest.fixture(scope="module")
def driving(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("driving") / "set"
    make_driving(out, learners=3, images_per_learner=40, val_images=12, seed=7)
    return out


def _files(root: Path) -> dict[str, bytes]:
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return {str(p.relative_to(root)): p.read_bytes() for p in files}


def test_the_same_seed_writes_the_same_bytes_and_another_seed_does_not(tmp_path: Path) -> None:
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        make_driving(tmp_path / name, learners=2, images_per_learner=5, val_images=3, seed=seed)
    a, b, c = (_files(tmp_path / name) for name in "abc")
    assert len(a) == 2 * (1 + 2 * 5) + (1 + 2 * 3) + 1  # data.yaml, images, labels; val; pooled
    assert a == b
    assert set(a) == set(c) and a != c


def test_every_split_reads_back_as_a_valid_yolo_dataset(driving: Path) -> None:
    pooled = read_yolo_dataset(driving)
    assert pooled.names == CLASS_NAMES
    assert pooled.num_examples == 3 * 40 and len(pooled.val) == 12
    for index in range(3):
        learner = read_yolo_dataset(driving / f"learner-{index}")
        assert learner.num_examples == 40
    boxes = np.concatenate([item.boxes for item in pooled.train + pooled.val])
    assert len(boxes) > 3 * 40  # 1 to 6 objects an image, a few too small to keep
    cx, cy, w, h = boxes[:, 1:].T
    # Boxes are clipped to the image: no edge lies outside it.
    assert np.all(cx - w / 2 >= -1e-6) and np.all(cx + w / 2 <= 1 + 1e-6)
    assert np.all(cy - h / 2 >= -1e-6) and np.all(cy + h / 2 <= 1 + 1e-6)
    with Image.open(pooled.train[0].image) as image:
        assert image.size == (160, 160) and image.mode == "RGB"


def test_cars_are_common_and_cyclists_and_traffic_lights_rare(driving: Path) -> None:
    counts = read_yolo_dataset(driving).class_counts()
    assert counts["car"] > 4 * counts["cyclist"] and counts["car"] > 4 * counts["traffic_light"]
    assert counts["pedestrian"] > counts["cyclist"]
    assert all(count > 0 for count in counts.values())  # rare, not absent


def _pixels(dataset: YoloDataset) -> np.ndarray:
    images = [np.asarray(Image.open(item.image), dtype=np.float64) for item in dataset.train]
    return np.stack(images)


def test_regions_differ_in_lighting_blur_and_class_mix(driving: Path) -> None:
    assert [r.name for r in REGIONS] == ["sunny-city", "night-highway", "foggy-suburb"]
    sunny, night, foggy = (read_yolo_dataset(driving / f"learner-{i}") for i in range(3))
    bright = {name: _pixels(d).mean() for name, d in (("sunny", sunny), ("night", night))}
    assert bright["night"] < 0.7 * bright["sunny"]
    sunny_px, foggy_px = _pixels(sunny), _pixels(foggy)
    # Fog: less contrast within an image.
    assert foggy_px.std(axis=(1, 2)).mean() < 0.7 * sunny_px.std(axis=(1, 2)).mean()
    # Blur: softer edges. The sharpest pixel steps (of 2x2-pooled images, to damp the
    # sensor noise) relative to the contrast: about 1.8 in the clear region, 0.9 in fog.
    sharpness = {}
    for name, px in (("sunny", sunny_px), ("foggy", foggy_px)):
        pooled = px.reshape(len(px), 80, 2, 80, 2, 3).mean(axis=(2, 4))
        steps = np.abs(np.diff(pooled, axis=2))
        sharpness[name] = np.percentile(steps, 99.5) / pooled.std(axis=(1, 2)).mean()
    assert sharpness["foggy"] < 0.7 * sharpness["sunny"]

    def share(dataset: YoloDataset, name: str) -> float:
        counts = dataset.class_counts()
        return counts[name] / sum(counts.values())

    assert share(night, "car") > share(sunny, "car") + 0.1
    assert share(foggy, "pedestrian") > share(night, "pedestrian") + 0.1


def test_bad_arguments_and_a_used_folder_are_user_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="--learners is 0"):
        make_driving(tmp_path / "x", learners=0)
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "mine.txt").write_text("keep me")
    with pytest.raises(UserError, match="not an empty directory"):
        make_driving(tmp_path / "used", learners=1)
    assert (tmp_path / "used" / "mine.txt").read_text() == "keep me"


def test_the_cli_makes_the_set_and_refuses_a_used_folder(tmp_path: Path) -> None:
    args = ["data", "make-driving", "out", "--learners", "2", "--images-per-learner", "3"]
    made = fedpilot(*args, "--val-images", "2", "--size", "96", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    assert '"region": "night-highway"' in made.stdout
    assert read_yolo_dataset(tmp_path / "out").num_examples == 6
    again = fedpilot(*args, cwd=tmp_path)
    assert again.returncode == 2
    assert again.stderr.startswith("fedpilot: error: ") and "Traceback" not in again.stderr
