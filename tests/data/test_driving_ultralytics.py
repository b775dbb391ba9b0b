"""Ultralytics itself reads the generated driving set box for box as fedpilot's reader does.

Runs where Ultralytics is installed (.venv-detect: `make .venv-detect`); skipped elsewhere.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fedpilot.data.driving import CLASS_NAMES, make_driving
from fedpilot.data.yolo import read_yolo_dataset

pytest.importorskip("ultralytics")
pytestmark = pytest.mark.detection

# Run in a subprocess: importing Ultralytics writes its settings file, and its environment
# (offline, a throw-away config folder) must be set before that import.
READ_BACK = """
import json, sys
from ultralytics.data import YOLODataset
data = {"names": dict(enumerate(json.loads(sys.argv[2]))), "nc": 4, "channels": 3}
dataset = YOLODataset(img_path=sys.argv[1], data=data, task="detect", imgsz=96, augment=False)
boxes = {}
for label in dataset.labels:
    rows = zip(label["cls"].ravel(), label["bboxes"])
    boxes[label["im_file"]] = [[float(c), *map(float, b)] for c, b in rows]
open(sys.argv[3], "w").write(json.dumps(boxes))
"""


def test_ultralytics_reads_the_same_boxes(tmp_path: Path) -> None:
    make_driving(tmp_path / "set", learners=1, images_per_learner=8, val_images=1, size=96, seed=2)
    ours = read_yolo_dataset(tmp_path / "set" / "learner-0")
    env = {**os.environ, "YOLO_OFFLINE": "1", "YOLO_CONFIG_DIR": str(tmp_path / "config")}
    images, out = tmp_path / "set" / "learner-0" / "images", tmp_path / "boxes.json"
    done = subprocess.run(
        [sys.executable, "-c", READ_BACK, str(images), json.dumps(CLASS_NAMES), str(out)],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    theirs = json.loads(out.read_text())
    assert len(theirs) == ours.num_examples == 8
    for item in ours.train:
        np.testing.assert_allclose(np.asarray(theirs[str(item.image)]).reshape(-1, 5), item.boxes)
