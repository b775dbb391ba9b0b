"""A run directory from a spec: made (named, holding the resolved spec and the MLflow
store it logs to), and read back (the spec a resume continues, the store it logs to)."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from pathlib import Path

import yaml

from fedpilot.errors import ResumeError, SpecError
from fedpilot.rundir import RunDir
from fedpilot.spec import FederationSpec, load_spec

_YAML_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def new_run_dir(spec: FederationSpec, suffix: str = "") -> tuple[str, Path]:
    """A fresh run directory under ``spec.output_dir`` holding the resolved spec.

    Raises:
        SpecError: ``output_dir`` cannot hold a run directory (not a folder, not
            writable).
    """
    run_id, run_dir = run_dir_name(spec, suffix)
    make_run_dir(spec, run_dir)
    return run_id, run_dir


def run_dir_name(spec: FederationSpec, suffix: str = "") -> tuple[str, Path]:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    run_id = f"{spec.name}{suffix}-{stamp}-{secrets.token_hex(2)}"
    return run_id, spec.output_dir / run_id


def make_run_dir(spec: FederationSpec, run_dir: Path) -> None:
    # libyaml's emitter: PyYAML's pure-Python one takes longer than a small model's round.
    text = yaml.dump(spec.resolved(), Dumper=_YAML_DUMPER, sort_keys=False)
    try:
        run_dir.mkdir(parents=True, exist_ok=False)
        RunDir(run_dir).spec.write_text(text)
        if spec.tracking.enabled:
            # The spec's output_dir (and a sqlite URI) may be relative to where the run was
            # started: a resume from elsewhere must log to the same store.
            uri = absolute_tracking_uri(spec.mlflow_uri())
            RunDir(run_dir).mlflow_uri.write_text(uri + "\n")
    except OSError as exc:
        raise SpecError(
            f"`output_dir`: cannot write a run directory under {str(spec.output_dir)!r}: "
            f"{exc.strerror or exc}",
            field="output_dir",
        ) from None


def run_tracking_uri(run_dir: Path, spec: FederationSpec) -> str:
    """The MLflow store of the run in ``run_dir``: the one recorded when it was made; for
    a run directory made before stores were recorded, the spec's, with the default store
    found beside the run directory (not under the current folder)."""
    try:
        recorded = RunDir(run_dir).mlflow_uri.read_text(encoding="utf-8").strip()
    except (OSError, ValueError):
        recorded = ""
    if recorded:
        return recorded
    if spec.tracking.mlflow_uri:
        return spec.tracking.mlflow_uri
    return spec.model_copy(update={"output_dir": run_dir.resolve().parent}).mlflow_uri()


def absolute_tracking_uri(uri: str) -> str:
    """``uri`` with a relative local path (a ``sqlite:///`` file, a plain folder) made
    absolute against the current folder, as MLflow would read it now."""
    if uri.startswith("sqlite:///"):
        path, sep, query = uri.removeprefix("sqlite:///").partition("?")
        if path and path != ":memory:" and not Path(path).is_absolute():
            return f"sqlite:///{Path(path).resolve()}{sep}{query}"
        return uri
    if "://" not in uri and not uri.startswith("databricks"):
        return str(Path(uri).resolve())
    return uri


def load_run_spec(run_dir: Path) -> FederationSpec:
    """The resolved spec a run was started with (what ``--resume`` continues)."""
    path = RunDir(run_dir).spec
    if not path.is_file():
        raise ResumeError(f"{str(run_dir)!r} is not a run directory (no {path.name})")
    return load_spec(path)
