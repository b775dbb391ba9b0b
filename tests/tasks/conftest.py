"""Shared fixtures of the task tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    # Tiny models train several times faster on one thread, above all on a busy CI box;
    # the setting is process-wide, so put it back for other test folders.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    # Generated datasets (MNIST-1D) go to a per-session folder, never to ~/.cache.
    folder = tmp_path_factory.getbasetemp() / "fedpilot-cache"
    monkeypatch.setenv("FEDPILOT_CACHE_DIR", str(folder))
