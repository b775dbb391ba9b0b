"""Writing credential files: atomically, with their permissions set before any byte lands."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from fedpilot.errors import UserError

PRIVATE = 0o600
PUBLIC = 0o644


def prepare_directory(directory: Path) -> None:
    """Create ``directory`` (and its parents) or fail with a message naming it.

    Raises:
        UserError: ``directory`` exists as a file or cannot be created.
    """
    if directory.exists() and not directory.is_dir():
        raise UserError(f"{directory} exists and is not a directory; choose another folder")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create the folder {directory}: {exc.strerror}") from exc


def refuse_existing(paths: Iterable[Path], *, overwrite: bool) -> None:
    """Fail before anything is written if one of ``paths`` exists and ``overwrite`` is off.

    Checking every file first means a refused call leaves the folder as it was, never half
    replaced (a new server certificate next to the old CA would not verify).

    Raises:
        UserError: Naming the existing files and how to replace them.
    """
    if overwrite:
        return
    existing = [str(p) for p in paths if p.exists()]
    if existing:
        raise UserError(
            f"refusing to overwrite {', '.join(existing)}; pass --force (overwrite=True) to "
            "replace them, which locks out anything that still uses the old files"
        )


def write_atomic(path: Path, data: bytes, *, mode: int) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename.

    The temporary file gets ``mode`` before the data is written, so a private key is never
    readable by others, not even for a moment, whatever the umask.

    Raises:
        UserError: The file cannot be written (permissions, full disk).
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise UserError(f"cannot write {path}: {exc.strerror or exc}") from exc
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
