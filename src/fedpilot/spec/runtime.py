"""Where learners run: in this process or a pool (local), on Flower's deployment engine
across machines (flower), or as Ray tasks on a cluster (ray)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator

from fedpilot.spec.sections import Section

_ADDRESS = re.compile(r"^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):(\d{1,5})$")


def check_address(value: str, field: str) -> str:
    """``host:port`` (IPv4, a DNS name or a bracketed IPv6 address) with a valid port."""
    match = _ADDRESS.fullmatch(value)
    if match is None or not 0 < int(match.group(2)) < 65536:
        raise ValueError(f"`{field}` must be host:port, got {field}={value!r}")
    return value


class _RuntimeBase(Section):
    round_timeout: float = Field(default=600.0, gt=0, description="Seconds a round may take.")
    torch_threads: int = Field(
        default=1, ge=1, le=256, description="torch threads per process (server and learners)."
    )
    metrics_port: int | None = Field(
        default=None,
        ge=0,
        le=65535,
        description="Serve Prometheus metrics on this port during the run (0: any free "
        "port, written to the run directory's metrics.url); unset: no endpoint.",
    )
    metrics_host: str = Field(
        default="127.0.0.1",
        description="Address the metrics endpoint listens on (0.0.0.0: every interface).",
    )
    metrics_learner_labels: int = Field(
        default=100,
        ge=0,
        le=100_000,
        description="Most learners with a series of their own per metric (last-seen shows "
        "those seen longest ago, drift scores the latest findings), so 10,000 learners "
        "make no 10,000 series.",
    )


class LocalRuntime(_RuntimeBase):
    """Learners on this machine: in this process (``workers: 0``) or a pool of processes."""

    mode: Literal["local"] = "local"
    workers: int = Field(
        default=0, ge=0, le=256, description="0: learners run in this process; N: a pool of N."
    )


class FlowerRuntime(_RuntimeBase):
    """Learners on their own machines, reached through a Flower SuperLink.

    ``fedpilot server`` starts the SuperLink itself unless ``superlink`` names a running
    one. TLS is on unless ``insecure``; learners authenticate with key pairs listed in
    ``authorized_learners`` (written by ``fedpilot learners keygen``).
    """

    mode: Literal["flower"]
    superlink: str | None = Field(
        default=None, description="host:port of a running SuperLink; unset: the server starts one."
    )
    listen: str = Field(
        default="0.0.0.0:8000",
        description="host:port the started SuperLink serves learners (Fleet API) and runs on.",
    )
    certificates: Path | None = Field(
        default=None,
        description="Folder from `fedpilot certs init` (ca.crt, server.pem, server.key).",
    )
    insecure: bool = Field(default=False, description="Plain HTTP, no TLS: development only.")
    authorized_learners: Path | None = Field(
        default=None,
        description="Allow-list of learner public keys; unset: learners are not authenticated.",
    )
    min_learners_to_start: int | None = Field(
        default=None,
        ge=1,
        description="Learners connected before round 1 starts; default sampling.min_learners.",
    )
    startup_timeout: float = Field(
        default=300.0, gt=0, description="Seconds to wait for those learners."
    )
    poll_interval: float = Field(
        default=0.05, gt=0, le=5, description="Seconds between polls for replies."
    )

    @field_validator("superlink", "listen")
    @classmethod
    def _address(cls, value: str | None, info: object) -> str | None:
        name = getattr(info, "field_name", "address")
        return None if value is None else check_address(value, f"runtime.{name}")


class RayRuntime(_RuntimeBase):
    """Simulated learners as Ray tasks, so a large simulation spreads over a Ray cluster."""

    mode: Literal["ray"]
    address: str | None = Field(
        default=None,
        description='A Ray cluster ("auto", "ray://host:10001"); unset: start a local instance.',
    )
    cpus_per_learner: float = Field(default=1.0, gt=0, description="Ray CPUs one learner takes.")


Runtime = Annotated[LocalRuntime | FlowerRuntime | RayRuntime, Field(discriminator="mode")]
