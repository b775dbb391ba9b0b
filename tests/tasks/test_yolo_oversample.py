"""The learner's class-imbalance oversampling: which images repeat, and how a repeat is
augmented (boxes follow the image)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fedpilot.data.yolo import DetectionImages, YoloImage
from fedpilot.tasks.yolo.oversample import Oversampling, minority_classes, training_order

NAMES = ("car", "pedestrian", "cyclist", "traffic_light")


def _images(classes_per_image: list[list[int]]) -> DetectionImages:
    items = []
    for number, classes in enumerate(classes_per_image):
        boxes = np.array([[c, 0.5, 0.5, 0.2, 0.2] for c in classes], dtype=np.float64)
        path = Path(f"img-{number}.png")
        items.append(YoloImage(path, path.with_suffix(".txt"), boxes.reshape(-1, 5)))
    return DetectionImages(tuple(items), NAMES)


def test_images_with_a_minority_class_repeat_copies_times() -> None:
    # 10 car boxes, 1 cyclist box: cyclist (1/11 < 15%) is the minority; pedestrians and
    # lights are absent, so nothing of theirs can repeat.
    images = _images([[0, 0], [0, 0, 2], [0, 0], [0, 0], [0, 0]])
    assert minority_classes(images, 0.15) == {2}
    assert training_order(images, Oversampling(copies=3)) == [0, 1, 2, 3, 4, 1, 1, 1]
    assert training_order(images, Oversampling(enabled=False)) == [0, 1, 2, 3, 4]
    assert training_order(_images([[]]), Oversampling()) == [0]


@pytest.mark.parametrize(
    ("params", "says"),
    [
        ({"copies": 0}, "oversample.copies"),
        ({"flip": 1.5}, "oversample.flip"),
        ({"rotate": -1}, "oversample.rotate"),
        ({"scale": 1.0}, "oversample.scale"),
        ({"copeis": 2}, "no key 'copeis'"),
        ("yes", "must be a mapping"),
    ],
)
def test_bad_settings_name_the_key(params: object, says: str) -> None:
    with pytest.raises(ValueError, match=says.replace(".", r"\.")):
        Oversampling.from_params(params)  # type: ignore[arg-type]


def test_true_means_the_defaults_and_none_means_off() -> None:
    assert Oversampling.from_params(True) == Oversampling()
    assert not Oversampling.from_params(None).enabled


@pytest.mark.detection
def test_a_flipped_repeat_moves_its_boxes_with_the_image() -> None:
    pytest.importorskip("ultralytics")
    from ultralytics.utils.instance import Instances

    from fedpilot.tasks.yolo.oversample import augmenter

    image = np.zeros((64, 64, 3), dtype=np.uint8)
    image[8:24, 4:20] = 255  # a white square at x 4..20, y 8..24
    boxes = np.array([[12 / 64, 16 / 64, 16 / 64, 16 / 64]], dtype=np.float32)
    label = {
        "img": image,
        "cls": np.array([[2.0]], dtype=np.float32),
        "instances": Instances(
            boxes, np.zeros((0, 1000, 2), np.float32), None, bbox_format="xywh", normalized=True
        ),
    }
    flip_only = Oversampling(blur=0.0, flip=1.0, contrast=0.0, rotate=0.0, scale=0.0)
    out = augmenter(flip_only, seed=0)(label)
    np.testing.assert_allclose(out["instances"].bboxes, [[52 / 64, 16 / 64, 16 / 64, 16 / 64]])
    assert out["cls"].tolist() == [[2.0]]
    assert out["img"][8:24, 44:60].min() == 255 and out["img"][8:24, 4:20].max() == 0
    # Seeded: the same settings and seed augment the same way.
    again = augmenter(Oversampling(), seed=5), augmenter(Oversampling(), seed=5)
    first, second = (a({**label, "img": image.copy()}) for a in again)
    np.testing.assert_array_equal(first["img"], second["img"])
