"""Shared fixtures: specs built in tmp dirs, the test ClientApps' folder."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

from fedpilot.spec import FederationSpec, validate_spec

APPS_DIR = Path(__file__).parent / "_apps"

# Audit logs are signed with the user's key (~/.config/fedpilot) unless FEDPILOT_AUDIT_KEY
# names another: the tests' runs, and their subprocesses, use one of their own.
_AUDIT_KEY_DIR = tempfile.mkdtemp(prefix="fedpilot-tests-")
atexit.register(shutil.rmtree, _AUDIT_KEY_DIR, ignore_errors=True)
os.environ["FEDPILOT_AUDIT_KEY"] = str(Path(_AUDIT_KEY_DIR) / "key.pem")

# CI replays the same examples every run (a red build must be reproducible); local runs
# keep exploring new ones.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


def app_spec(tmp_path: Path, **overrides: Any) -> FederationSpec:
    """A small federation of the test ClientApp, writing under ``tmp_path``."""
    raw: dict[str, Any] = {
        "name": "testapp",
        "seed": 3,
        "task": {
            "flower_clientapp": "testapps:app",
            "initial_weights": "testapps:initial_weights",
            "run_config": {},
        },
        "data": {"num_learners": 5},
        "rounds": 3,
        "sampling": {"fraction": 1.0, "min_learners": 2},
        "guard": {"enabled": False},
        "tracking": {"enabled": False},
        "evaluation": {"federated_every": 1},
        "runtime": {"mode": "local", "workers": 0, "round_timeout": 60},
        "output_dir": str(tmp_path / "runs"),
        "base_dir": str(APPS_DIR),
    }
    for key, value in overrides.items():
        section, _, field = key.partition("__")
        if field:
            raw[section] = {**raw.get(section, {}), field: value}
        else:
            raw[section] = value
    return validate_spec(raw)


@pytest.fixture
def make_app_spec(tmp_path: Path) -> Any:
    return lambda **overrides: app_spec(tmp_path, **overrides)
