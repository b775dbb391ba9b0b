"""A small pool of learner processes that can be killed at a deadline.

``concurrent.futures`` cannot cancel a running task, so a learner stuck past the
round deadline would hold its worker forever. Here each worker has its own pipe;
at the deadline the parent kills the busy ones and starts fresh workers lazily.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import signal
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess

from fedpilot.errors import UserError
from fedpilot.fleet._messages import LearnerJob, failed_reply
from fedpilot.fleet.apps import LearnerSource
from fedpilot.types import Reply

_PRELOAD = ["fedpilot.fleet._messages", "fedpilot.fleet.apps", "fedpilot.tasks"]


def _worker_main(conn: Connection, source: LearnerSource, threads: int) -> None:
    # The parent owns Ctrl-C: it writes the final checkpoint and stops workers itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from fedpilot._threads import limit_torch_threads
    from fedpilot.fleet._messages import run_learner

    limit_torch_threads(threads)
    try:
        runtime = source.load()
    except Exception as exc:  # report instead of dying silently
        # A user's error (a spec naming a missing ClientApp) is raised as it is, in the parent.
        mistake = exc if isinstance(exc, UserError) else None
        conn.send(("load-error", (f"{type(exc).__name__}: {exc}", mistake)))
        return
    conn.send(("ready", None))
    while True:
        try:
            job = conn.recv()
        except EOFError:
            return
        if job is None:
            return
        conn.send(("reply", run_learner(runtime, job)))


@dataclass
class _Worker:
    process: BaseProcess
    conn: Connection
    job: LearnerJob | None = None


class WorkerPool:
    """``size`` processes, each running the ClientApp from ``source``."""

    def __init__(self, source: LearnerSource, size: int, torch_threads: int = 1) -> None:
        self._source = source
        self._threads = torch_threads
        self._size = size
        # Forking this process after torch or gRPC started threads is unsafe, and spawning
        # re-imports torch, sklearn and Flower in every worker (~5 s each). A forkserver
        # imports them once, single-threaded, then forks workers (and replacements for
        # killed ones) in milliseconds.
        self._ctx = mp.get_context("forkserver")
        self._ctx.set_forkserver_preload(_PRELOAD)
        self._workers: list[_Worker] = [self._start() for _ in range(size)]
        for worker in self._workers:
            self._await_ready(worker)

    def _start(self) -> _Worker:
        parent, child = self._ctx.Pipe()
        process = self._ctx.Process(
            target=_worker_main,
            args=(child, self._source, self._threads),
            daemon=True,
            name="fedpilot-learner",
        )
        process.start()
        child.close()
        return _Worker(process, parent)

    def _await_ready(self, worker: _Worker) -> None:
        kind, detail = worker.conn.recv()
        if kind != "ready":
            self.close()
            message, mistake = detail
            if mistake is not None:
                raise mistake
            raise RuntimeError(f"learner process could not load the ClientApp: {message}")

    def run(self, jobs: list[LearnerJob], deadline: float) -> Iterator[tuple[Reply, object]]:
        """Yield (reply, learner state) per job as they finish; unfinished ones at the
        deadline become failed replies and their workers are replaced."""
        pending = deque(jobs)
        try:
            while pending or any(w.job is not None for w in self._workers):
                for worker in self._workers:
                    if worker.job is None and pending:
                        worker.job = pending.popleft()
                        worker.conn.send(worker.job)
                busy = [w for w in self._workers if w.job is not None]
                remaining = deadline - time.monotonic()
                conns = [w.conn for w in busy]
                ready = wait(conns, timeout=remaining) if remaining > 0 else []
                if not ready:
                    yield from self._expire(busy, pending)
                    return
                for worker in busy:
                    if worker.conn in ready:
                        yield self._collect(worker)
        finally:
            # Abandoned mid-round (an exception upstream): don't leave stale replies queued.
            for worker in self._workers:
                if worker.job is not None:
                    self._replace(worker)

    def _collect(self, worker: _Worker) -> tuple[Reply, object]:
        job = worker.job
        assert job is not None
        try:
            _, (reply, state) = worker.conn.recv()
        except (EOFError, OSError):
            worker.process.join(timeout=1)
            code = worker.process.exitcode
            reply = failed_reply(job, f"learner process died (exit code {code})")
            state = job.state
            self._replace(worker)
        worker.job = None
        return reply, state

    def _expire(
        self, busy: list[_Worker], pending: deque[LearnerJob]
    ) -> Iterator[tuple[Reply, object]]:
        for worker in busy:
            job = worker.job
            assert job is not None
            self._replace(worker)
            yield failed_reply(job, _timeout(job, "did not reply")), job.state
        for job in pending:
            yield failed_reply(job, _timeout(job, "was not started")), job.state

    def _replace(self, worker: _Worker) -> None:
        worker.process.kill()
        worker.process.join(timeout=5)
        worker.conn.close()
        fresh = self._start()
        worker.process, worker.conn, worker.job = fresh.process, fresh.conn, None
        self._await_ready(worker)

    def close(self) -> None:
        for worker in self._workers:
            with contextlib.suppress(BrokenPipeError, OSError):
                worker.conn.send(None)
        for worker in self._workers:
            worker.process.join(timeout=2)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join(timeout=2)
            worker.conn.close()
        self._workers = []


def _timeout(job: LearnerJob, what: str) -> str:
    return f"timeout: learner {job.learner} {what} before the round deadline"
