"""An open-loop HTTP load generator for the serving benchmark.

Requests are due at a fixed rate whatever the server does; at most ``concurrency`` are in
flight, over keep-alive connections written by hand (the least client work a request
can take, so the client does not mask the servers' differences). A request's latency
counts from when it was due: a server that falls behind is charged for the wait.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from _common import _group_members

P99_TARGET_MS = 50.0
IN_FLIGHT = 64


@dataclass(frozen=True)
class Target:
    name: str
    port: int
    path: str
    pgid: int

    def cpu_seconds(self) -> float:
        """CPU time (user + system) of the server's processes so far."""
        total = 0
        for pid in _group_members(self.pgid):
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[-1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Load:
    rate: float
    sent: int
    ok: int
    errors: int
    latencies_s: tuple[float, ...]
    throughput: float
    server_cpu_s: float = 0.0

    @property
    def cpu_ms_per_request(self) -> float | None:
        return 1000 * self.server_cpu_s / self.ok if self.ok else None

    def percentile(self, q: float) -> float | None:
        if not self.latencies_s:
            return None
        return float(np.percentile(self.latencies_s, q)) * 1000

    @property
    def p50(self) -> float | None:
        return self.percentile(50)

    @property
    def p99(self) -> float | None:
        return self.percentile(99)

    def keeps_target(self) -> bool:
        """p99 within the target, no errors, and the offered rate (nearly) all served."""
        p99 = self.p99
        return (
            self.errors == 0
            and p99 is not None
            and p99 <= P99_TARGET_MS
            and self.throughput >= 0.95 * self.rate
        )

    def row(self, name: str) -> list[Any]:
        return [
            name, self.rate, self.p50, self.p99, self.throughput, self.errors,
            self.cpu_ms_per_request,
        ]  # fmt: skip


class _Connection:
    """One keep-alive HTTP/1.1 connection: the least client work a request can take."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def post(self, head: bytes, body: bytes) -> int:
        self.writer.write(head + str(len(body)).encode() + b"\r\n\r\n" + body)
        status_line = await self.reader.readline()
        length = 0
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        await self.reader.readexactly(length)
        return int(status_line.split()[1])


async def _load(
    target: Target, bodies: list[bytes], rate: float, seconds: float, concurrency: int
) -> Load:
    # perf_counter, not loop.time(): uvloop's clock ticks in whole milliseconds.
    clock = time.perf_counter
    head = (
        f"POST {target.path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Content-Type: application/json\r\nContent-Length: "
    ).encode()
    pool: asyncio.Queue[_Connection] = asyncio.Queue()
    for _ in range(concurrency):
        pool.put_nowait(_Connection(*await asyncio.open_connection("127.0.0.1", target.port)))
    total = int(rate * seconds)
    latencies: list[float] = []
    errors = 0
    last_done = 0.0

    async def one(i: int, due: float) -> None:
        nonlocal errors, last_done
        connection = await pool.get()  # at most `concurrency` in flight; waiting counts
        try:
            status = await connection.post(head, bodies[i % len(bodies)])
        except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
            errors += 1
            connection = _Connection(*await asyncio.open_connection("127.0.0.1", target.port))
        else:
            if status == 200:
                latencies.append(clock() - due)
            else:
                errors += 1
        last_done = clock()
        pool.put_nowait(connection)

    start = clock() + 0.05
    tasks = []
    for i in range(total):
        due = start + i / rate
        delay = due - clock()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, due)))
    await asyncio.gather(*tasks)
    while not pool.empty():
        pool.get_nowait().writer.close()
    elapsed = max(last_done - start, 1e-9)
    return Load(rate, total, len(latencies), errors, tuple(latencies), len(latencies) / elapsed)


def pooled(runs: list[Load]) -> Load:
    """Slices of one load as one run: latencies together, throughput averaged."""
    return Load(
        rate=runs[0].rate,
        sent=sum(r.sent for r in runs),
        ok=sum(r.ok for r in runs),
        errors=sum(r.errors for r in runs),
        latencies_s=tuple(t for r in runs for t in r.latencies_s),
        throughput=sum(r.throughput for r in runs) / len(runs),
        server_cpu_s=sum(r.server_cpu_s for r in runs),
    )


def load(
    target: Target,
    bodies: list[bytes],
    rate: float,
    seconds: float,
    *,
    concurrency: int = IN_FLIGHT,
) -> Load:
    """Offer ``rate`` requests/s for ``seconds``, cycling through ``bodies``."""
    import uvloop

    cpu = target.cpu_seconds()
    run = uvloop.run(_load(target, bodies, rate, seconds, concurrency))
    return dataclasses.replace(run, server_cpu_s=target.cpu_seconds() - cpu)
