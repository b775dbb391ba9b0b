"""Following a file another process appends to: whole new lines, each once."""

from __future__ import annotations

from pathlib import Path


class LineFollower:
    """The lines appended to ``path`` since byte ``offset`` (default: its current end).

    A line still being written waits for its newline; a file that shrank was rotated
    and is read again from its start.
    """

    def __init__(self, path: Path, offset: int | None = None) -> None:
        self._path = path
        if offset is None:
            offset = path.stat().st_size if path.exists() else 0
        self._offset = offset
        self._partial = b""

    def new_lines(self) -> list[str]:
        if not self._path.exists():
            return []
        with self._path.open("rb") as file:
            if file.seek(0, 2) < self._offset:
                self._offset, self._partial = 0, b""
            file.seek(self._offset)
            chunk = self._partial + file.read()
            self._offset = file.tell()
        *lines, self._partial = chunk.split(b"\n")
        return [line.decode(errors="replace") for line in lines]
