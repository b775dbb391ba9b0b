"""Bad specs and commands get a clear error and exit 2, quickly, within a memory bound,
never a traceback, and leave no run directory behind (issue 13, "Bad specs and
commands"). Each runs the real `fedpilot` command in a subprocess."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from clitools import fedpilot
from conftest import APPS_DIR

MEMORY_LIMIT = 2 * 1024**3
"""Address space a spec check may use (it needs ~0.5 GB; the alias bomb took 13.9 GB)."""
TIME_LIMIT = 60.0
"""Seconds a refusal may take (it takes ~1 s, mostly imports; the 50 MB spec ran 300+ s)."""

DIGITS = "name: digits\ntask: {name: digits-mlp}\ntracking: {enabled: false}\n"
APP = (
    "name: app\n"
    "task: {flower_clientapp: 'testapps:app', initial_weights: 'testapps:initial_weights'}\n"
    "data: {num_learners: 3}\ntracking: {enabled: false}\n"
    f"base_dir: {json.dumps(str(APPS_DIR))}\n"
)


def _bounded_fedpilot(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    def limit_memory() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))

    return subprocess.run(
        [sys.executable, "-m", "fedpilot", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=TIME_LIMIT,
        preexec_fn=limit_memory,
    )


def _refused(out: subprocess.CompletedProcess[str], *words: str) -> None:
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr, out.stderr
    for word in words:
        assert word in out.stderr, out.stderr


def test_a_yaml_alias_bomb_is_refused_quickly_in_bounded_memory(tmp_path: Path) -> None:
    lines = [DIGITS, 'a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 10)]
    (tmp_path / "bomb.yaml").write_text("\n".join(lines) + "\n")
    for command in (["spec", "check"], ["run"]):
        out = _bounded_fedpilot(*command, "bomb.yaml", "--set", "rounds=1", cwd=tmp_path)
        _refused(out, "more than 100000 values", "aliases")


def test_a_huge_spec_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    with (tmp_path / "huge.yaml").open("w") as file:  # 50 MB, a 25M-element list
        file.write(DIGITS + "junk: [")
        file.write("0," * 25_000_000)
        file.write("0]\n")
    out = _bounded_fedpilot("spec", "check", "huge.yaml", cwd=tmp_path)
    _refused(out, "larger than 256 KiB")


def test_nesting_beyond_the_bound_is_refused(tmp_path: Path) -> None:
    deep = "[" * 500 + "]" * 500
    (tmp_path / "deep.yaml").write_text(DIGITS + f"data: {{params: {{x: {deep}}}}}\n")
    _refused(_bounded_fedpilot("spec", "check", "deep.yaml", cwd=tmp_path))
    (tmp_path / "cycle.yaml").write_text(DIGITS + "loop: &loop [*loop]\n")
    _refused(_bounded_fedpilot("spec", "check", "cycle.yaml", cwd=tmp_path), "nested more than")


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("local.lr=.inf", "local.lr"),
        ("runtime.round_timeout=.inf", "runtime.round_timeout"),
        ("local.momentum=.nan", "local.momentum"),
        ("task.params.hidden=-.inf", "task.params.hidden"),
        ("rounds=true", "rounds"),
        ("data.num_learners=false", "data.num_learners"),
        ("sampling.fraction=true", "sampling.fraction"),
        ("seed=2024-13-45", "seed"),
        ("rounds=[", "rounds"),
    ],
)
def test_a_bad_value_fails_spec_check_naming_the_field(
    tmp_path: Path, override: str, field: str
) -> None:
    (tmp_path / "spec.yaml").write_text(DIGITS)
    _refused(fedpilot("spec", "check", "spec.yaml", "--set", override, cwd=tmp_path), field)


def test_non_finite_numbers_in_the_file_fail_run_before_any_learner_runs(tmp_path: Path) -> None:
    (tmp_path / "spec.yaml").write_text(DIGITS + "local: {lr: .inf}\n")
    _refused(fedpilot("run", "spec.yaml", cwd=tmp_path), "`local.lr` must be a finite number")
    assert not (tmp_path / "fedpilot-runs").exists()


def test_legitimate_numbers_still_load(tmp_path: Path) -> None:
    (tmp_path / "spec.yaml").write_text(
        DIGITS + "rounds: 3.0\nlocal: {lr: 1, epochs: 2, momentum: 0}\nseed: 0x10\n"
    )
    out = fedpilot("spec", "check", "spec.yaml", "--show", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "rounds: 3\n" in out.stdout and "lr: 1.0\n" in out.stdout and "seed: 16\n" in out.stdout


@pytest.mark.parametrize("command", ["run", "server"])
def test_an_output_dir_that_cannot_hold_runs_exits_2(tmp_path: Path, command: str) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    spec = DIGITS if command == "run" else DIGITS + "runtime: {mode: flower}\n"
    (tmp_path / "spec.yaml").write_text(spec)
    extra = ["--insecure"] if command == "server" else []
    for output_dir in ("/proc/nope", "a-file"):
        out = fedpilot(command, "spec.yaml", *extra, "--output-dir", output_dir, cwd=tmp_path)
        _refused(out, "`output_dir`", output_dir)


@pytest.mark.parametrize(
    ("spec", "override", "field"),
    [
        (APP, "task.flower_clientapp=testapps:nothing", "task.flower_clientapp"),
        (APP, "task.initial_weights=missing.npz", "task.initial_weights"),
        (APP, "task.initial_weights={tmp}/garbage.npz", "task.initial_weights"),
        (DIGITS, "data.num_learners=5000", "data.num_learners"),
        (DIGITS, "selection.name=nowhere:Selector", "selection.name"),
    ],
)
def test_a_run_that_cannot_start_exits_2_and_leaves_no_run_directory(
    tmp_path: Path, spec: str, override: str, field: str
) -> None:
    (tmp_path / "spec.yaml").write_text(spec)
    (tmp_path / "garbage.npz").write_bytes(b"not an npz file at all")
    override = override.format(tmp=tmp_path)
    out = fedpilot("run", "spec.yaml", "--set", override, "--output-dir", "runs", cwd=tmp_path)
    _refused(out, f"`{field}`")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
    listed = fedpilot("runs", "list", "--output-dir", "runs", "--json", cwd=tmp_path)
    assert json.loads(listed.stdout or "[]") == []


def test_a_missing_clientapp_in_a_pool_of_learners_exits_2(tmp_path: Path) -> None:
    (tmp_path / "spec.yaml").write_text(APP + "runtime: {mode: local, workers: 2}\n")
    out = fedpilot(
        "run", "spec.yaml", "--set", "task.flower_clientapp=testapps:nothing", cwd=tmp_path
    )
    _refused(out, "`task.flower_clientapp`")
    assert not (tmp_path / "fedpilot-runs").exists()


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        (["strategy.name=fedprox", "strategy=true"], "strategy"),
        (["data.partition=bad", "data.partition.alpha=1"], "data.partition"),
        (["data.partition=dirichlet([)"], "data.partition"),
    ],
)
def test_overrides_found_by_the_fuzz_test_exit_2(
    tmp_path: Path, overrides: list[str], field: str
) -> None:
    # Each was a traceback (AttributeError, ValueError, ScannerError) before.
    (tmp_path / "spec.yaml").write_text(DIGITS)
    args = [arg for override in overrides for arg in ("--set", override)]
    _refused(fedpilot("spec", "check", "spec.yaml", *args, cwd=tmp_path), f"`{field}`")
