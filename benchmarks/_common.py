"""Shared helpers for the benchmarks: timing, memory probes, machine facts, subprocess
workers and the results writer (a Markdown table plus a JSON file in ``results/``).

The machine the benchmarks run on is shared and noisy, so every script reports ratios
against a peer measured in the same invocation; absolute numbers are context only.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
# Subprocess logs (Flower and Ray are verbose) stay out of the repository.
LOG_DIR = Path(tempfile.gettempdir()) / "fedpilot-bench-logs"

# -------------------------------------------------------------------------- timing


@dataclass(frozen=True)
class Timing:
    """Wall-clock samples (seconds) of one measured operation."""

    samples: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def best(self) -> float:
        return min(self.samples)

    def as_dict(self) -> dict[str, Any]:
        return {"samples_s": list(self.samples), "median_s": self.median, "min_s": self.best}


def time_once(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Run ``fn`` once after a full garbage collection; return (seconds, its result)."""
    gc.collect()
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


# -------------------------------------------------------------------------- memory


def _proc_status_kib(key: str) -> int | None:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def current_rss_bytes() -> int | None:
    """This process's resident set size now (Linux ``VmRSS``), or None elsewhere."""
    kib = _proc_status_kib("VmRSS")
    return None if kib is None else kib * 1024


def peak_rss_bytes() -> int | None:
    """This process's peak resident set size (Linux ``VmHWM``, same as ``ru_maxrss``)."""
    kib = _proc_status_kib("VmHWM")
    return None if kib is None else kib * 1024


def reset_peak_rss() -> bool:
    """Reset the peak RSS to the current RSS (Linux >= 4.0: write 5 to clear_refs).

    Returns False where that is not possible; then a peak measured afterwards is only
    meaningful if it exceeds everything the process used before.
    """
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
    except OSError:
        return False
    return True


# -------------------------------------------------------------------------- machine


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], cwd=REPO_DIR, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def machine_info() -> dict[str, Any]:
    """Facts that make a result interpretable: CPU, memory, load, library versions, commit."""
    mem_kib = None
    try:
        with open("/proc/meminfo") as meminfo:
            mem_kib = int(meminfo.readline().split()[1])
    except (OSError, ValueError, IndexError):
        pass
    status = _git("status", "--porcelain")
    return {
        "timestamp_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": platform.node(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_gib": None if mem_kib is None else round(mem_kib / 2**20, 1),
        "load_avg_1_5_15": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "versions": {
            name: _version(name) for name in ("fedpilot", "flwr", "numpy", "torch", "ray")
        },
        "git_commit": _git("rev-parse", "--short", "HEAD"),
        "git_dirty": None if status is None else bool(status),
    }


# -------------------------------------------------------------------------- workers


class WorkerError(RuntimeError):
    """A benchmark subprocess failed; the message holds the tail of its log."""


def run_worker(
    script: Path,
    args: Sequence[str],
    *,
    log_path: Path,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
) -> dict[str, Any]:
    """Run ``python script --_worker-result FILE *args`` in a fresh process.

    The child's stdout and stderr go to ``log_path`` (Flower and Ray are chatty; the
    benchmark's own output stays clean). The child writes its measurements as JSON to
    the result file, which this function returns.
    """
    with tempfile.TemporaryDirectory(prefix="fedpilot-bench-") as tmp:
        result_path = Path(tmp) / "result.json"
        cmd = [sys.executable, str(script), "--_worker-result", str(result_path), *args]
        child_env = {**os.environ, **(env or {})}
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "w") as log:
            # A new session, so a timeout can end the child and everything it started
            # (Ray's raylet, GCS and workers) by process group, and nothing else.
            proc = subprocess.Popen(
                cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=child_env,
                cwd=REPO_DIR,
                start_new_session=True,
            )
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired as exc:
                _kill_group(proc)
                raise WorkerError(
                    f"{' '.join(args)} timed out after {timeout} s; log: {log_path}\n"
                    + tail(log_path)
                ) from exc
            finally:
                # Leftovers of a finished child (e.g. a Ray worker that outlived it).
                _kill_group(proc, only_leftovers=True)
        if proc.returncode != 0 or not result_path.exists():
            raise WorkerError(
                f"{' '.join(args)} exited with {proc.returncode}; log: {log_path}\n"
                + tail(log_path)
            )
        result: dict[str, Any] = json.loads(result_path.read_text())
        return result


def _kill_group(proc: subprocess.Popen[bytes], *, only_leftovers: bool = False) -> list[int]:
    """SIGKILL what is left of the process group (session) that ``proc`` leads.

    With ``only_leftovers`` the child itself has exited; any process still in its group
    was started by it (a Ray worker, say). Members are looked up in /proc and killed by
    pid; while one exists, the group id cannot be reused by an unrelated process.
    Returns the pids that were killed.
    """
    if only_leftovers and proc.poll() is None:
        return []
    killed = []
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        killed.append(proc.pid)
    for pid in _group_members(proc.pid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
    proc.wait()
    return killed


def _group_members(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Fields after the parenthesised command name: state, ppid, pgrp, ...
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 2 and int(fields[2]) == pgid and int(entry.name) != os.getpid():
            members.append(int(entry.name))
    return members


def tail(path: Path, lines: int = 25) -> str:
    """The last ``lines`` lines of a text file (for error messages)."""
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(text[-lines:])


def write_worker_result(path: str, result: Mapping[str, Any]) -> None:
    Path(path).write_text(json.dumps(result, indent=2, default=_json_default))


# -------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Check:
    """One pass/fail criterion: ``value`` compared with ``target`` by ``op``."""

    name: str
    value: float | None
    target: float
    op: str  # ">=" or "<=" or "<"
    unit: str = ""
    note: str = ""
    required: bool = True  # False: reported, but not part of the overall verdict

    @property
    def passed(self) -> bool:
        if self.value is None:
            return False
        if self.op == ">=":
            return self.value >= self.target
        if self.op == "<=":
            return self.value <= self.target
        if self.op == "<":
            return self.value < self.target
        raise ValueError(f"unknown comparison {self.op!r}")

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed}


@dataclass
class Table:
    """A Markdown table: a title, column headers and rows of cells."""

    title: str
    headers: Sequence[str]
    rows: list[Sequence[Any]] = field(default_factory=list)

    def markdown(self) -> str:
        lines = [f"### {self.title}", "", _md_row(self.headers)]
        lines.append("|" + "|".join("---" for _ in self.headers) + "|")
        lines.extend(_md_row(row) for row in self.rows)
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        return {"title": self.title, "headers": list(self.headers), "rows": self.rows}


def _md_row(cells: Iterable[Any]) -> str:
    return "| " + " | ".join(_fmt(c) for c in cells) + " |"


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if value == 0:
            return "0"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 1:
            return f"{value:.2f}"
        return f"{value:.3g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def fmt(value: Any) -> str:
    """Format a number the way the tables do."""
    return _fmt(value)


def write_results(
    name: str,
    *,
    title: str,
    description: str,
    params: Mapping[str, Any],
    tables: Sequence[Table],
    checks: Sequence[Check],
    notes: Sequence[str],
    data: Mapping[str, Any],
    command: str | None = None,
) -> tuple[Path, Path]:
    """Write ``results/<name>.md`` and ``results/<name>.json``; return both paths."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    machine = machine_info()
    command = command or "python " + " ".join(
        [str(Path(sys.argv[0]).resolve().relative_to(REPO_DIR)), *sys.argv[1:]]
    )
    required = [c for c in checks if c.required]
    if not required:
        verdict = "REPORT (no pass/fail target)"
    else:
        verdict = "PASS" if all(c.passed for c in required) else "FAIL"

    md: list[str] = [f"# {title}", "", description, ""]
    md += [f"**Overall: {verdict}**", "", f"Command: `{command}`", ""]
    md.append("## Targets")
    md.append("")
    check_table = Table("Checks", ["criterion", "measured", "target", "result", "note"])
    for c in checks:
        check_table.rows.append(
            [
                c.name,
                f"{_fmt(c.value)} {c.unit}".strip(),
                f"{c.op} {_fmt(c.target)} {c.unit}".strip(),
                ("PASS" if c.passed else "FAIL") + ("" if c.required else " (info)"),
                c.note,
            ]
        )
    md += [check_table.markdown(), ""]
    md.append("## Measurements")
    md.append("")
    for table in tables:
        md += [table.markdown(), ""]
    md.append("## Parameters")
    md.append("")
    md += [
        f"- `{k}`: {_fmt(v) if not isinstance(v, (list, tuple)) else v}" for k, v in params.items()
    ]
    md.append("")
    md.append("## Notes")
    md.append("")
    md += [f"- {n}" for n in notes]
    md.append("")
    md.append("## Machine")
    md.append("")
    md += [f"- {k}: {v}" for k, v in machine.items()]
    md.append("")

    md_path = RESULTS_DIR / f"{name}.md"
    json_path = RESULTS_DIR / f"{name}.json"
    md_path.write_text("\n".join(md))
    payload = {
        "benchmark": name,
        "title": title,
        "command": command,
        "verdict": verdict,
        "machine": machine,
        "params": dict(params),
        "checks": [c.as_dict() for c in checks],
        "tables": [t.as_dict() for t in tables],
        "notes": list(notes),
        "data": dict(data),
    }
    json_path.write_text(json.dumps(payload, indent=2, default=_json_default) + "\n")
    return md_path, json_path


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"not JSON-serializable: {type(value).__name__}")
