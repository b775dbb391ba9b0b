"""Import user objects named ``package.module:attr`` in a spec, and fedpilot's own
packages' names on first use."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fedpilot.errors import SpecError


@contextmanager
def extra_sys_path(base_dir: Path | None) -> Iterator[None]:
    """Make the spec's folder importable while user code is imported."""
    entry = str(base_dir) if base_dir is not None else None
    added = entry is not None and entry not in sys.path
    if added:
        sys.path.insert(0, entry)  # type: ignore[arg-type]
    try:
        yield
    finally:
        if added:
            sys.path.remove(entry)  # type: ignore[arg-type]


def import_object(ref: str, *, field: str, base_dir: Path | None = None) -> Any:
    """Import ``package.module:attr``; errors name the spec ``field`` and the value."""
    module_name, sep, attr = ref.partition(":")
    if not sep or not module_name or not attr:
        raise SpecError(f"`{field}` must look like `package.module:attr`, got {ref!r}", field=field)
    with extra_sys_path(base_dir):
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise SpecError(
                f"`{field}`: cannot import module {module_name!r} ({exc}), got {field}={ref!r}",
                field=field,
            ) from exc
    try:
        return getattr(module, attr)
    except AttributeError:
        raise SpecError(
            f"`{field}`: module {module_name!r} has no attribute {attr!r}, got {field}={ref!r}",
            field=field,
        ) from None


def lazy_names(package: str, where: Mapping[str, str]) -> Callable[[str], Any]:
    """A package's module ``__getattr__`` (PEP 562) loading each name in ``where`` from
    its module (``package.<module>``) on first use, so importing the package stays light."""

    def __getattr__(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{module}"), name)

    return __getattr__
