"""Small pure helpers of the MLflow callback: keys, values, batches, files, environment."""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import fcntl
import importlib.metadata
import io
import json
import logging
import math
import os
import re
import subprocess
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from fedpilot.orchestrator.events import RoundRecord, RoundSummary

# MLflow's limits (mlflow.utils.validation): values longer than this are refused, and a
# log_batch call takes at most 1000 metrics and 100 params + tags.
MAX_PARAM_VALUE_LENGTH = 6000
MAX_TAG_VALUE_LENGTH = 5000
MAX_KEY_LENGTH = 250
MAX_METRICS_PER_BATCH = 1000
MAX_PARAMS_TAGS_PER_BATCH = 100

_T = TypeVar("_T")
_INVALID_KEY_CHARS = re.compile(r"[^\w.\- :]")
_TRACKING_URI_LOCK = threading.Lock()


def safe_key(key: str) -> str:
    """An MLflow-valid param or metric key: odd characters (``/`` included) become ``_``."""
    return _INVALID_KEY_CHARS.sub("_", key)[:MAX_KEY_LENGTH]


def truncate(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, marked with an ellipsis when cut."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def flatten_params(data: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested mappings as dotted keys; leaves as strings (JSON for non-strings).

    Args:
        data: The resolved spec (plain JSON data).
        prefix: Prepended to every key (used by the recursion).

    Returns:
        ``{"local.lr": "0.05", "task.params.hidden": "[64, 32]", ...}`` with MLflow-safe
        keys and values cut to MLflow's length limit.
    """
    flat: dict[str, str] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten_params(value, prefix=f"{name}."))
            continue
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        flat[safe_key(name)] = truncate(text, MAX_PARAM_VALUE_LENGTH)
    return flat


def _as_float(value: object) -> float | None:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def _put(metrics: dict[str, float], key: str, value: object) -> None:
    number = _as_float(value)
    if number is not None:
        metrics[safe_key(key)] = number


def prefixed(prefix: str, values: Mapping[str, object]) -> dict[str, float]:
    """``{prefix + name: float(value)}``, skipping values that are not numbers."""
    metrics: dict[str, float] = {}
    for name, value in values.items():
        _put(metrics, f"{prefix}{name}", value)
    return metrics


ROUND_MARKER = "participants"
"""The metric every logged round has: its steps are the rounds an MLflow run has."""


def round_metrics(summary: RoundSummary) -> dict[str, float]:
    """Every number worth charting about one round, keyed as the MLflow UI shows it."""
    metrics = record_metrics(summary.record())
    metrics.update(prefixed("candidate.", summary.candidate_metrics))
    metrics.update(prefixed("", summary.privacy))
    for learner, values in summary.learner_metrics.items():
        metrics.update(prefixed(f"learner.{learner}.", values))
    return metrics


def record_metrics(record: RoundRecord) -> dict[str, float]:
    """What the round's record in the run history (a checkpoint's) has of
    :func:`round_metrics`: all but the candidate's and the learners' metrics."""
    metrics = prefixed("global.", record.metrics)
    if record.train_loss is not None:
        _put(metrics, "train_loss", record.train_loss)
    counts: dict[str, object] = {
        ROUND_MARKER: record.participants,
        "accepted": record.accepted,
        "rejected_updates": record.rejected,
        "failed_updates": record.failed,
        "round_duration_s": record.duration,
        "bytes_sent": record.bytes_sent,
        "bytes_received": record.bytes_received,
        "rolled_back": 1.0 if record.status == "rolled_back" else 0.0,
    }
    if record.learners_online is not None:
        counts["learners_online"] = record.learners_online
    metrics.update(prefixed("", counts))
    return metrics


def chunked(items: Sequence[_T], size: int) -> Iterator[Sequence[_T]]:
    """Consecutive slices of at most ``size`` items."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def history_csv(history: Sequence[RoundRecord]) -> str:
    """The run history as CSV: one row per round, one column per field and per metric."""
    fields = [f.name for f in dataclasses.fields(RoundRecord) if f.name != "metrics"]
    metric_names = sorted({name for record in history for name in record.metrics})
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*fields, *metric_names])
    for record in history:
        row = [getattr(record, name) for name in fields]
        row += [record.metrics.get(name) for name in metric_names]
        writer.writerow(["" if _missing(value) else value for value in row])
    return out.getvalue()


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def git_commit(cwd: Path | None = None) -> str | None:
    """The commit checked out in ``cwd`` (default: the working directory), if any."""
    try:
        proc = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = proc.stdout.strip()
    return commit if proc.returncode == 0 and re.fullmatch(r"[0-9a-f]{40,64}", commit) else None


def pinned_requirements(*distributions: str) -> list[str]:
    """``name==version`` for installed distributions, so MLflow skips its slow inference.

    Local version labels (``2.13.0+cpu``) are dropped: PyPI serves no such files.
    """
    pins: list[str] = []
    for name in distributions:
        try:
            version = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pins.append(name)
            continue
        pins.append(f"{name}=={version.split('+', 1)[0]}")
    return pins


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI, or None for any other store."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri.removeprefix("sqlite:///").split("?", 1)[0]
    if not path or path == ":memory:":
        return None
    return Path(path)


def prepare_store(uri: str) -> None:
    """Creates a local SQLite store and its folder (SQLite creates the file, not folders),
    one process at a time.

    MLflow creates its tables on a store's first use, by migrations that two processes
    starting at once would both run (one then fails: ``table _alembic_tmp_experiments
    already exists``), and that a process killed meanwhile leaves half done for good. An
    exclusive lock on ``<store>.lock`` beside the database makes the second process wait,
    and a new store is made under another name and renamed into place once complete.
    """
    path = sqlite_path(uri)
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.with_name(f"{path.name}.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if path.exists():
            return
        from mlflow import MlflowClient

        draft = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        draft.unlink(missing_ok=True)
        client = MlflowClient(tracking_uri=f"sqlite:///{draft}")
        client.search_experiments(max_results=1)
        # The draft's connections are closed (best effort: MLflow keeps them privately).
        engine = getattr(getattr(client._tracking_client, "store", None), "engine", None)
        if engine is not None:
            engine.dispose()
        os.replace(draft, path)


def artifact_location(uri: str, experiment: str) -> str | None:
    """Where a new experiment keeps its artifacts.

    For a local SQLite store, next to the database (``mlartifacts/<experiment>``); MLflow's
    own default would be ``./mlruns`` in whatever folder the process started in. Other
    stores (a tracking server, Databricks) decide for themselves: None.
    """
    path = sqlite_path(uri)
    if path is None:
        return None
    return (path.resolve().parent / "mlartifacts" / safe_key(experiment)).as_uri()


@contextlib.contextmanager
def use_tracking_uri(uri: str) -> Iterator[None]:
    """Points MLflow's process-wide tracking URI at ``uri`` for the duration of a call.

    Model logging in MLflow 3 (``Model.log``) reads the global URI; everything else in
    the callback passes its client explicitly. The lock keeps two callbacks in one process
    from swapping the URI under each other.
    """
    import mlflow

    with _TRACKING_URI_LOCK:
        was_set = mlflow.is_tracking_uri_set()  # type: ignore[no-untyped-call]
        previous = mlflow.get_tracking_uri() if was_set else None
        mlflow.set_tracking_uri(uri)
        try:
            yield
        finally:
            mlflow.set_tracking_uri(previous)  # type: ignore[arg-type]  # None unsets it


class _DropMessages(logging.Filter):
    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.prefix)


@contextlib.contextmanager
def quiet_log(logger: str, prefix: str) -> Iterator[None]:
    """Drops ``logger``'s records starting with ``prefix`` for the duration of a call.

    For warnings about a choice made on purpose (pickle for torch models, since fedpilot
    has no input example for the pt2 format), which would otherwise end every run.
    """
    target = logging.getLogger(logger)
    drop = _DropMessages(prefix)
    target.addFilter(drop)
    try:
        yield
    finally:
        target.removeFilter(drop)
