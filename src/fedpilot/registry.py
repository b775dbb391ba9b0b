"""One way to turn a spec's name into a component, for every extension point.

Each extension point (strategy, aggregation rule, selector, guard, task, transform) keeps
one :class:`Registry` of its built-in classes by spec name; a spec may instead name a
user's own class as ``package.module:Class``. Resolving, checking the class and building
it with the spec's parameters work the same everywhere, and so do the errors: each names
the spec field and the value.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Generic, TypeVar, cast

from fedpilot._imports import import_object
from fedpilot.errors import SpecError

T = TypeVar("T")
C = TypeVar("C", bound=type)


class Registry(Generic[T]):
    """Built-in classes of one extension point by spec name.

    Args:
        kind: What the classes are, for messages ("selector", "aggregation rule").
        base: The ABC every class must subclass.
        field: The spec field that names a class (``selection.name``).
    """

    # ``base`` is a plain ``type``: the bases are ABCs, which mypy will not take as
    # ``type[T]``; a registry's annotation (``Registry[Selector]``) gives ``T``.
    def __init__(self, kind: str, base: type, *, field: str) -> None:
        self.kind = kind
        self.base = base
        self.field = field
        self._classes: dict[str, type[T]] = {}

    def add(self, name: str, cls: type[T]) -> type[T]:
        """Register ``cls`` under ``name``; a name is registered once."""
        if name in self._classes and self._classes[name] is not cls:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._classes[name] = cls
        return cls

    def register(self, name: str) -> Callable[[C], C]:
        """Class decorator form of :meth:`add`."""

        def decorate(cls: C) -> C:
            self.add(name, cls)
            return cls

        return decorate

    def names(self) -> list[str]:
        return sorted(self._classes)

    def __contains__(self, name: object) -> bool:
        return name in self._classes

    def __getitem__(self, name: str) -> type[T]:
        return self._classes[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._classes)

    def items(self) -> list[tuple[str, type[T]]]:
        return [(name, self._classes[name]) for name in self.names()]

    def resolve(self, name: str, *, base_dir: Path | None = None) -> type[T]:
        """The class ``name`` stands for: a built-in, or a user's ``package.module:Class``.

        Raises:
            SpecError: ``name`` is neither a built-in nor an importable, concrete
                subclass of :attr:`base`; the message names :attr:`field` and the value.
        """
        cls = self._classes.get(name)
        if cls is not None:
            return cls
        if ":" not in name:
            raise SpecError(
                f"`{self.field}` must be one of {', '.join(self.names())} or "
                f"`package.module:Class`, got {self.field.rsplit('.', 1)[-1]}={name!r}",
                field=self.field,
            )
        obj = import_object(name, field=self.field, base_dir=base_dir)
        if not (isinstance(obj, type) and issubclass(obj, self.base)):
            raise SpecError(
                f"`{self.field}` must name a subclass of {_public_name(self.base)}, got "
                f"{name!r} ({type(obj).__name__} {obj!r})",
                field=self.field,
            )
        if inspect.isabstract(obj):
            missing = ", ".join(sorted(getattr(obj, "__abstractmethods__", ())))
            raise SpecError(
                f"`{self.field}`: {name!r} is abstract; implement {missing}", field=self.field
            )
        return cast("type[T]", obj)  # checked above: a concrete subclass of ``base``

    def build(
        self,
        name: str,
        params: Mapping[str, Any] | None = None,
        *,
        base_dir: Path | None = None,
        params_field: str | None = None,
        **context: Any,
    ) -> T:
        """Resolve ``name`` and build it with ``params`` (the spec's, checked against the
        constructor's signature) plus ``context`` (what the caller supplies, such as
        ``num_learners``, passed only where the constructor takes it).

        Raises:
            SpecError: as :meth:`resolve`, or the parameters do not fit the class
                (``params_field``, default ``<field's section>.params``).
        """
        cls = self.resolve(name, base_dir=base_dir)
        where = params_field or f"{self.field.rsplit('.', 1)[0]}.params"
        given = dict(params or {})
        signature = inspect.signature(cls)
        takes_any = any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())
        extra = {k: v for k, v in context.items() if takes_any or k in signature.parameters}
        try:
            signature.bind(**given, **extra)
        except TypeError as exc:
            raise SpecError(
                f"`{where}` do not fit {name}: {exc}, got params={given!r}", field=where
            ) from None
        try:
            return cls(**given, **extra)
        except (TypeError, ValueError) as exc:
            raise SpecError(
                f"`{where}`: {name} refused them: {exc}, got params={given!r}", field=where
            ) from exc


def _public_name(cls: type) -> str:
    """``cls`` as users import it: from the shortest loaded package that exports it."""
    parts = cls.__module__.split(".")
    for end in range(1, len(parts) + 1):
        module = sys.modules.get(".".join(parts[:end]))
        if module is not None and getattr(module, cls.__name__, None) is cls:
            return f"{module.__name__}.{cls.__name__}"
    return f"{cls.__module__}.{cls.__name__}"


__all__ = ["Registry"]
