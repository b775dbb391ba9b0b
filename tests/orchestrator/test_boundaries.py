"""What the orchestrator may depend on, and where event names may be spelled: checked on
the source's syntax trees, not by searching text."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import fedpilot
from fedpilot.orchestrator.vocabulary import EventType

SRC = Path(fedpilot.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> Iterator[str]:
    """Every module ``path`` imports, anywhere in it (functions and TYPE_CHECKING blocks
    included), relative imports resolved."""
    package = _module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    return _imports_in(path.read_text(), package)


def _imports_in(source: str, package: list[str]) -> Iterator[str]:
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            yield module
            # `from fedpilot import tracking` imports the package too.
            yield from (f"{module}.{alias.name}" for alias in node.names)


def test_the_orchestrator_never_imports_tracking() -> None:
    offending = {
        f"{path.relative_to(SRC)}: {name}"
        for path in sorted((SRC / "orchestrator").rglob("*.py"))
        for name in _imports(path)
        if name == "fedpilot.tracking" or name.startswith("fedpilot.tracking.")
    }
    assert not offending


def test_the_boundary_check_sees_every_kind_of_import() -> None:
    found = set(_imports(SRC / "orchestrator" / "events.py"))
    assert "fedpilot.types" in found and "fedpilot.spec" in found  # a TYPE_CHECKING import
    source = "def f():\n    from ..tracking import store\n    from .. import tracking\n"
    found = set(_imports_in(source, ["fedpilot", "orchestrator"]))
    assert {"fedpilot.tracking", "fedpilot.tracking.store"} <= found
    assert list(_imports_in("import fedpilot.tracking.store as s", [])) == [
        "fedpilot.tracking.store"
    ]


def test_event_names_are_spelled_only_in_the_vocabulary() -> None:
    names = {t.value for t in EventType}
    spelled = {
        f"{path.relative_to(SRC)}:{node.lineno}: {node.value}"
        for path in sorted(SRC.rglob("*.py"))
        if path != SRC / "orchestrator" / "vocabulary.py"
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Constant) and node.value in names
    }
    assert not spelled


def test_the_vocabulary_loads_neither_torch_nor_flower() -> None:
    code = (
        "import sys, fedpilot.orchestrator.vocabulary, fedpilot.rundir;"
        "print(sorted(m for m in ('torch', 'flwr', 'mlflow') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _names(path: Path) -> set[str]:
    """Every identifier and attribute name the module's code uses."""
    tree = ast.parse(path.read_text())
    names = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    names |= {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    names |= {
        alias.asname or alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }
    return names


def _strategy_names() -> set[str]:
    from fedpilot.strategy import STRATEGIES

    sections = {cls.Params.__name__ for _, cls in STRATEGIES.items()}
    return sections | {cls.__name__ for _, cls in STRATEGIES.items()} | {"STRATEGIES"}


def test_the_orchestrator_names_no_strategy() -> None:
    strategies = _strategy_names()
    offending = {
        f"{path.relative_to(SRC)}: {name}"
        for path in sorted((SRC / "orchestrator").rglob("*.py"))
        for name in (_names(path) & strategies)
    } | {
        f"{path.relative_to(SRC)}: {name}"
        for path in sorted((SRC / "orchestrator").rglob("*.py"))
        for name in _imports(path)
        if name == "fedpilot.strategy" or name.startswith("fedpilot.strategy.")
    }
    assert not offending


def test_the_spec_validator_has_no_strategy_special_cases() -> None:
    # The sections may define the strategies' parameters; the checks across sections
    # (spec/model.py, spec/load.py) ask the strategy instead of naming one.
    strategies = _strategy_names() - {"STRATEGIES"}
    # model.py names one: FedAvg's section is the `strategy` field's default value.
    assert _names(SRC / "spec" / "model.py") & strategies == {"FedAvgStrategy"}
    assert not _names(SRC / "spec" / "load.py") & strategies
