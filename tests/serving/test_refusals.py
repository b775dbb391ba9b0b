"""A model `fedpilot serve` cannot serve is refused at start: exit 2, one clear line."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

REFUSED = [
    # (arguments, words the message must contain)
    (["nope"], "no registered model version nope@champion"),
    (["digits@staging"], "no registered model version digits@staging"),
    (["digits/9"], "no registered model version digits/9"),
    (["digits-unsigned/1"], "has no signature"),
    (["digits", "--canary", "staging=5"], "no registered model version digits@staging"),
    (["digits", "--canary", "challenger"], "--canary must be ALIAS=PERCENT"),
    (["digits", "--canary", "challenger=0"], "--canary must be ALIAS=PERCENT"),
    (["digits", "--canary", "champion=5"], "names the alias MODEL already serves"),
    (["digits/abc"], "version must be a positive integer"),
    (["digits@"], "MODEL must look like NAME, NAME@alias or NAME/version"),
    (["digits", "--max-rows", "0"], "--max-rows >= 1"),
]


@pytest.fixture(scope="module")
def unsigned(digits_registry: Any) -> None:
    digits_registry.register("digits-unsigned", sources=[digits_registry.unsigned_uri])


def _refused(serve_once: Callable[..., Any], *args: str, uri: str | None = None) -> str:
    done = serve_once(*args, uri=uri)
    assert done.returncode == 2, (args, done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith("fedpilot: error: "), done.stderr
    return done.stderr


@pytest.mark.parametrize(("args", "words"), REFUSED, ids=[" ".join(a) for a, _ in REFUSED])
def test_a_model_that_cannot_be_served_is_refused_at_start(
    serve_once: Any, unsigned: None, args: list[str], words: str
) -> None:
    assert words in _refused(serve_once, *args)


def test_a_missing_store_is_refused_and_not_created(serve_once: Any, tmp_path: Path) -> None:
    store = tmp_path / "nowhere" / "mlflow.db"
    message = _refused(serve_once, "digits", uri=f"sqlite:///{store}")
    assert f"no MLflow store at {store}" in message
    assert not store.parent.exists()
    # Without --tracking-uri, the store of the runs directory (as `fedpilot models`).
    message = _refused(serve_once, "digits", "-o", str(tmp_path / "runs"), uri="")
    assert f"no MLflow store at {tmp_path / 'runs' / 'mlflow.db'} (--output-dir" in message


def test_a_taken_port_is_refused(serve_once: Any) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        message = _refused(serve_once, "digits", "--port", port)
    assert f"cannot listen on 127.0.0.1:{port}" in message
