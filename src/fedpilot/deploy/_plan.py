"""What a deployment of a spec runs, whatever carries it: paths inside the containers, the
server's and the learners' command lines, and the checks that keep a deployment from
waiting forever. The Kubernetes and Compose renderers (and the Helm chart, which a test
holds equal to them) only arrange these into their own objects."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from fedpilot import __version__
from fedpilot.errors import UserError
from fedpilot.spec import FederationSpec, FlowerRuntime

# The images run as this user (deploy/docker/Dockerfile.*); manifests insist on it.
UID = 10001

# Where things live inside the containers. The images make /var/lib/fedpilot the user's
# home and a volume: runs on the server, data on a learner.
HOME = "/var/lib/fedpilot"
RUNS_DIR = f"{HOME}/runs"
SPEC_DIR = "/etc/fedpilot/spec"
SPEC_FILE = f"{SPEC_DIR}/spec.yaml"
TLS_DIR = "/etc/fedpilot/tls"
KEYS_DIR = "/etc/fedpilot/keys"
ALLOW_LIST_DIR = "/etc/fedpilot/learners"
ALLOW_LIST = "authorized_learners.yaml"

# What the server reads from `fedpilot certs init DIR`; learners need the CA only (ca.key
# stays with whoever signs certificates and is mounted nowhere).
SERVER_TLS_FILES = ("ca.crt", "server.pem", "server.key")
LEARNER_TLS_FILES = ("ca.crt",)

# What the containers run: dumb-init (installed in the images) as PID 1 forwards signals and
# reaps the SuperLink's and SuperNode's children. The same as the images' ENTRYPOINTs.
SERVER_COMMAND = ("dumb-init", "--", "fedpilot", "server")
LEARNER_COMMAND = ("dumb-init", "--", "fedpilot", "learner")

_LOOPBACK = {"127.0.0.1", "localhost", "[::1]"}
_TAG_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def app_version() -> str:
    """fedpilot's version as an image tag and label value allow it (no ``+local``)."""
    return _TAG_UNSAFE.sub("-", __version__)


def default_images() -> tuple[str, str]:
    """The server and learner images `docker build` in deploy/README.md makes."""
    return f"fedpilot-server:{app_version()}", f"fedpilot-learner:{app_version()}"


@dataclass(frozen=True)
class Plan:
    """One deployment of a spec: what both renderers need, decided once."""

    spec: FederationSpec
    runtime: FlowerRuntime
    learners: int
    port: int
    mlflow_uri: str | None

    @property
    def tls(self) -> bool:
        """TLS is on unless the spec says ``runtime.insecure``."""
        return not self.runtime.insecure

    @property
    def auth(self) -> bool:
        """Learners authenticate when the spec names an allow-list."""
        return self.runtime.authorized_learners is not None

    def overrides(self) -> list[tuple[str, str]]:
        """Spec fields whose value differs inside the containers: passed as ``--set``."""
        result = []
        if self.tls:
            result.append(("runtime.certificates", TLS_DIR))
        if self.auth:
            result.append(("runtime.authorized_learners", f"{ALLOW_LIST_DIR}/{ALLOW_LIST}"))
        if self.mlflow_uri is not None:
            result.append(("tracking.mlflow_uri", self.mlflow_uri))
        return result

    def spec_text(self) -> str:
        """The spec file the server reads: resolved, with the container paths filled in.

        Every default is written out, so the deployment runs the same federation even if a
        later fedpilot changes a default. ``base_dir`` is the host's folder and is left out.
        """
        raw = self.spec.model_dump(mode="json", exclude={"base_dir"})
        raw["output_dir"] = RUNS_DIR
        for key, value in self.overrides():
            node = raw
            *parents, leaf = key.split(".")
            for part in parents:
                node = node[part]
            node[leaf] = value
        return dump_yaml(raw)

    def server_args(self, spec_file: str = SPEC_FILE) -> list[str]:
        """Arguments of ``fedpilot server`` in the server container."""
        args = [spec_file, "--output-dir", RUNS_DIR]
        for key, value in self.overrides():
            args += ["--set", f"{key}={value}"]
        return args

    def learner_args(self, index: str, server: str, *, data_file: str | None = None) -> list[str]:
        """Arguments of ``fedpilot learner`` for learner ``index`` (a number, or a
        ``$(VAR)`` that Kubernetes fills in per pod)."""
        args = ["--server", f"{server}:{self.port}"]
        if data_file is None:
            args += ["--partition", f"{index}/{self.learners}"]
        else:
            args += ["--data", data_file]
        args += ["--name", f"learner-{index}"]
        args += ["--ca", f"{TLS_DIR}/ca.crt"] if self.tls else ["--insecure"]
        if self.auth:
            args += ["--key", f"{KEYS_DIR}/learner-{index}.key"]
        return args

    def health_urls(self) -> list[str]:
        """The SuperLink's health endpoint, as the server container reaches it."""
        scheme = "https" if self.tls else "http"
        return [f"{scheme}://127.0.0.1:{self.port}/health"]


def plan(
    spec: FederationSpec, *, learners: int | None = None, mlflow_uri: str | None = None
) -> Plan:
    """Check that ``spec`` can be deployed and decide what the deployment runs.

    Raises:
        UserError: the spec is not a ``runtime.mode: flower`` spec, names an external
            SuperLink, listens on loopback only, or needs more learners than deployed.
    """
    runtime = spec.runtime
    if not isinstance(runtime, FlowerRuntime):
        raise UserError(
            "`runtime.mode` must be flower to deploy a federation on machines, "
            f"got mode={runtime.mode!r}; edit the spec or add `--set 'runtime={{mode: flower}}'`"
        )
    if runtime.superlink is not None:
        raise UserError(
            "`runtime.superlink` must be unset to deploy: the server container starts the "
            f"SuperLink itself, got superlink={runtime.superlink!r}"
        )
    host, _, port = runtime.listen.rpartition(":")
    if host in _LOOPBACK:
        raise UserError(
            "`runtime.listen` must not be a loopback address in a deployment: learners in "
            f"other containers could not reach it, got listen={runtime.listen!r}; "
            "use 0.0.0.0:PORT"
        )
    count = spec.data.num_learners if learners is None else learners
    needed = runtime.min_learners_to_start or spec.sampling.min_learners
    if count < needed:
        raise UserError(
            f"a deployment needs at least {needed} learners to start round 1 "
            "(runtime.min_learners_to_start, else sampling.min_learners), "
            f"got learners={count}"
        )
    return Plan(spec=spec, runtime=runtime, learners=count, port=int(port), mlflow_uri=mlflow_uri)


def check_name(value: str, what: str, *, max_length: int = 63) -> str:
    """A DNS-1123 label: what Kubernetes and Compose accept as a name."""
    if len(value) > max_length or not re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", value):
        raise UserError(
            f"`{what}` must be at most {max_length} lowercase letters, digits or '-', "
            f"starting and ending with a letter or digit, got {what}={value!r}"
        )
    return value


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class _Dumper(yaml.SafeDumper):
    """Plain YAML for people: no anchors, multi-line strings as literal blocks."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def dump_yaml(data: Mapping[str, Any] | list[Any]) -> str:
    text: str = yaml.dump(data, Dumper=_Dumper, sort_keys=False, width=4096)
    return text


def dump_yaml_documents(documents: list[dict[str, Any]]) -> str:
    text: str = yaml.dump_all(documents, Dumper=_Dumper, sort_keys=False, width=4096)
    return text
