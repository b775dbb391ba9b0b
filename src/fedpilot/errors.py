"""The one exception hierarchy of fedpilot.

User errors (a bad spec, a bad file, a bad command-line value) derive from
:class:`UserError`; the CLI maps them to exit code 2 and a one-paragraph message.
Everything else is a bug or an environment failure and exits 1.
"""

from __future__ import annotations


class FedpilotError(Exception):
    """Base of every error fedpilot raises on purpose."""


class UserError(FedpilotError):
    """Something the user gave us is wrong; the message says what and what is allowed."""


class SpecError(UserError):
    """A federation spec failed validation. ``field`` is the dotted path of the culprit."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class DataFileError(UserError):
    """A data file the user gave is malformed. ``path`` and ``line`` (1-based) name the spot."""

    def __init__(self, message: str, *, path: str, line: int | None = None) -> None:
        where = path if line is None else f"{path}:{line}"
        super().__init__(f"{where}: {message}")
        self.path = path
        self.line = line


class ResumeError(UserError):
    """A run directory cannot be resumed (missing or inconsistent checkpoint)."""


class RunDirInUse(UserError):
    """Another process runs the run in this run directory (it holds the directory's lock)."""


class TaskError(FedpilotError):
    """A Task failed while building its model, loading data, training or evaluating."""


class RoundFailed(FedpilotError):
    """A round could not produce a new global model (too few accepted updates)."""
