"""The house's layers point one way (docs/design.md, "Layers"), read statically from every import.

- `fstcn.core` imports no torch and nothing of the project above it;
- `fstcn.service` imports, from the project, only `fstcn.core`, itself and the model bundle, and no torch;
- `fstcn.model` never imports `fstcn.service`;
- nothing in the product imports `fstcn.bench` except the CLI's `bench` command, and nothing imports
  `experiments/` or `tests/`;
- no import cycle among the project's modules (function-level imports included).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# The installed namespace: package -> folder (pyproject.toml's [tool.setuptools.package-dir]).
FOLDERS = {
    "fstcn": "fstcn",
    "fstcn.core": "core",
    "fstcn.model": "model",
    "fstcn.service": "service",
    "fstcn.bench": "bench",
    "fstcn.models": "models",
}


def module_files() -> dict[str, Path]:
    """Every module of the installed namespace -> its file."""
    modules: dict[str, Path] = {}
    for package, folder in FOLDERS.items():
        root = REPO / folder
        for path in root.rglob("*.py"):
            parts = path.relative_to(root).with_suffix("").parts
            if package == "fstcn" and parts[0] in {"core", "model", "service", "bench", "models"}:
                continue
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join((package, *parts))] = path
    return modules


MODULES = module_files()


def imports_of(module: str, path: Path) -> Iterator[tuple[int, str]]:
    """(line, imported module) for every import in the file, relative ones resolved."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base]) if base else ".".join(anchor)
            yield node.lineno, base
            for alias in node.names:  # `from fstcn.core import fusion` imports a module too
                if f"{base}.{alias.name}" in MODULES:
                    yield node.lineno, f"{base}.{alias.name}"


def project_target(name: str) -> str | None:
    """The project module an import names (its longest known prefix), or None for outside code."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in MODULES:
            return candidate
    return None


def violations(layer: str, allowed: tuple[str, ...], forbidden_outside: tuple[str, ...] = ()) -> list[str]:
    found = []
    for module, path in MODULES.items():
        if not (module == layer or module.startswith(layer + ".")):
            continue
        for line, name in imports_of(module, path):
            where = f"{path.relative_to(REPO)}:{line} imports {name}"
            if name.split(".")[0] in forbidden_outside:
                found.append(where)
            target = project_target(name)
            if target is None or target == layer or target.startswith(layer + "."):
                continue
            if not any(target == ok or target.startswith(ok + ".") for ok in allowed):
                found.append(where)
            if name.split(".")[0] in ("experiments", "tests"):
                found.append(where)
    return found


def test_every_package_is_mapped() -> None:
    assert {"fstcn.core.scoring", "fstcn.service.app", "fstcn.model.network", "fstcn.cli"} <= set(MODULES)


def test_the_core_imports_nothing_above_it_and_no_torch() -> None:
    assert violations("fstcn.core", allowed=("fstcn.models",), forbidden_outside=("torch",)) == []


def test_the_service_imports_only_the_core_and_no_torch() -> None:
    allowed = ("fstcn.core", "fstcn.models")
    assert violations("fstcn.service", allowed=allowed, forbidden_outside=("torch",)) == []


def test_the_training_side_never_imports_the_service() -> None:
    assert violations("fstcn.model", allowed=("fstcn.core", "fstcn.models")) == []


def test_the_product_does_not_import_studies_or_benchmarks() -> None:
    found = [
        f"{path.relative_to(REPO)}:{line} imports {name}"
        for module, path in MODULES.items()
        if not module.startswith(("fstcn.bench", "fstcn.commands.bench"))
        for line, name in imports_of(module, path)
        if name.split(".")[0] in ("experiments", "tests") or name.startswith("fstcn.bench")
    ]
    assert found == []


def test_no_import_cycles() -> None:
    graph = {
        module: {
            target
            for _, name in imports_of(module, path)
            if (target := project_target(name)) is not None and target != module
        }
        for module, path in MODULES.items()
    }
    # A package's __init__ is imported before its submodules: importing a submodule is not a cycle
    # through its own package when the package module does not import it back.
    cycles = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if node.startswith(nxt + "."):  # a module importing its own (parent) package
                continue
            if state.get(nxt) == 1:
                cycles.append(" -> ".join([*stack[stack.index(nxt) :], nxt]))
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)
    assert cycles == []


@pytest.mark.parametrize("layer", ["fstcn.core", "fstcn.service", "fstcn.model"])
def test_each_layer_has_modules(layer: str) -> None:
    assert sum(module.startswith(layer + ".") for module in MODULES) >= 5
