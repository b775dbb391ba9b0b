"""Ctrl-C and SIGTERM during a run: the run ends ``interrupted`` at its last checkpoint,
and none of its records is cut in the middle.

Python raises :class:`KeyboardInterrupt` wherever the main thread happens to be: inside a
SQLite transaction of MLflow (whose lock then blocks the run's last records for a minute),
inside a garbage-collector callback (which swallows it: the run goes on as if nothing
happened), or between a round's checkpoint and the records of that round. Here a signal
cuts the run at once only where cutting loses nothing, a round's computation (the driver
keeps the state of the last checkpoint), and waits through :func:`held` sections (a
checkpoint, the callbacks' records), to be raised when the section ends. Every signal is
also remembered until the run ends, so one that was swallowed is raised at the next
:func:`raise_pending`.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any


class Terminated(KeyboardInterrupt):
    """SIGTERM (what Kubernetes and ``docker stop`` send), handled as Ctrl-C is."""


class _Gate:
    """The process's one signal gate (handlers belong to the main thread)."""

    def __init__(self) -> None:
        self.pending: KeyboardInterrupt | None = None
        self.held = 0
        self.installed = False

    def handle(self, signum: int, frame: FrameType | None) -> None:
        del frame
        signal_ = Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()
        if self.pending is None or isinstance(signal_, Terminated):
            self.pending = signal_  # SIGTERM, the harder ask, wins
        if self.held == 0:
            raise self.pending


_GATE = _Gate()


@contextlib.contextmanager
def handling_interrupts() -> Iterator[None]:
    """SIGINT and SIGTERM go through the gate while a run goes on (main thread only). A
    SIGINT that Python does not turn into KeyboardInterrupt when the run begins (ignored,
    as under ``nohup``, or a host's own handler) is left as it is."""
    if threading.current_thread() is not threading.main_thread() or _GATE.installed:
        yield
        return
    previous: dict[int, Any] = {}
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        previous[signal.SIGINT] = signal.signal(signal.SIGINT, _GATE.handle)
    previous[signal.SIGTERM] = signal.signal(signal.SIGTERM, _GATE.handle)
    _GATE.installed, _GATE.pending, _GATE.held = True, None, 0
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        _GATE.installed, _GATE.pending = False, None


@contextlib.contextmanager
def held() -> Iterator[None]:
    """A section no signal cuts: one that arrives meanwhile is raised when the section
    ends (by the outermost one). Outside the main thread, or outside a run, nothing
    changes."""
    if not _GATE.installed or threading.current_thread() is not threading.main_thread():
        yield
        return
    _GATE.held += 1
    try:
        yield
    finally:
        _GATE.held -= 1
    raise_pending()


def raise_pending() -> None:
    """Raise a signal that arrived and was held, or swallowed where it was raised."""
    if _GATE.held == 0 and _GATE.pending is not None:
        raise _GATE.pending


@contextlib.contextmanager
def ending() -> Iterator[None]:
    """The run's end: its last records are written whatever arrives, and a signal
    meanwhile asks for nothing more (the run is ending already)."""
    if not _GATE.installed or threading.current_thread() is not threading.main_thread():
        yield
        return
    _GATE.held += 1
    try:
        yield
    finally:
        _GATE.held -= 1
        _GATE.pending = None
