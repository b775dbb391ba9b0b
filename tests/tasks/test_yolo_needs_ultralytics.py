"""Where Ultralytics is not installed (the main virtualenv), a yolo spec cannot start:
`fedpilot run` exits 2 saying where the task runs, and leaves no run directory."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import yaml

from clitools import fedpilot
from fedpilot.data.driving import make_driving

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("ultralytics") is not None, reason="Ultralytics is installed here"
)


@pytest.mark.parametrize("mode", ["federated", "centralized"])
def test_a_yolo_spec_exits_2_naming_the_detection_virtualenv(tmp_path: Path, mode: str) -> None:
    make_driving(tmp_path / "set", learners=2, images_per_learner=2, val_images=1, size=64)
    spec = {
        "name": "yolo",
        "task": {"name": "yolo", "params": {"root": str(tmp_path / "set")}},
        "data": {"num_learners": 2},
        "output_dir": str(tmp_path / "runs"),
    }
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    extra = ["--centralized"] if mode == "centralized" else []
    done = fedpilot("run", str(tmp_path / "spec.yaml"), *extra, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "needs Ultralytics" in done.stderr and "make .venv-detect" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
