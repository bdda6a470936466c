"""The package's layering: every import points down (README, "Architecture"), and no import is circular.

Imports are read from the source with `ast`, function-local ones included (an import hidden in a function
still runs, and hiding it is how a cycle is usually dodged); imports under ``if TYPE_CHECKING:`` are
type annotations only and never run. Importing ``a.b.c`` also runs the ``__init__`` of ``a.b``, so that
package is counted as imported too (except the importer's own parent packages, already imported).
"""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "cozoo"

# Layers, bottom first: a module may import modules of its own layer or of layers below it. The key is a
# module prefix; the longest matching prefix decides a module's layer.
LAYERS: dict[str, int] = {
    "cozoo.version": 0,
    "cozoo.runtime": 0,  # torch-free: runs exported steps with onnxruntime, numpy and PyAV only
    "cozoo.timeline": 0,  # torch-free: which frames a model steps on (clips, streams, the ONNX runner)
    "cozoo.layers": 1,
    "cozoo.labels": 1,
    "cozoo.distributed": 1,
    "cozoo.continual": 2,
    "cozoo.models": 3,
    "cozoo.weights": 4,
    "cozoo.flops": 4,
    "cozoo.fuse": 4,
    "cozoo.data": 4,
    "cozoo.export": 4,
    "cozoo.factory": 5,
    "cozoo.registry": 6,
    "cozoo.inference": 6,
    "cozoo.zoo": 6,
    "cozoo.training": 7,
    "cozoo.evaluation": 8,
    "cozoo.commands": 10,
    "cozoo.cli": 11,
    "cozoo.demo": 11,
    "cozoo.__main__": 12,
    "cozoo": 6,  # the package's own __init__: the lazily imported public API
}


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, module: str, is_package: bool, modules: set[str]) -> set[str]:
    """Modules of the package that ``module`` imports (run-time imports only)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _type_checking_only(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            named = (f"{target}.{alias.name}" for alias in node.names)
            found.update(name for name in named if name in modules)  # `from package import module`
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    implied = set()
    own_parents = {".".join(module.split(".")[:i]) for i in range(1, module.count(".") + 1)}
    for target in found:
        parts = target.split(".")
        implied.update(".".join(parts[:i]) for i in range(1, len(parts)))
    return {m for m in (found | implied) - own_parents if m in modules and m != module}


def import_graph(root: Path) -> dict[str, set[str]]:
    """module -> the package modules it imports, for every module under ``root`` (a package folder)."""
    files = {module_name(path, root): path for path in root.rglob("*.py")}
    graph = {}
    for module, path in files.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        graph[module] = _imports(tree, module, path.name == "__init__.py", set(files))
    return graph


def layer_of(module: str) -> int:
    matches = [prefix for prefix in LAYERS
               if module == prefix or (prefix != "cozoo" and module.startswith(prefix + "."))]
    if not matches:
        raise KeyError(f"{module} has no layer: add its prefix to LAYERS (and the README's Architecture)")
    return LAYERS[max(matches, key=len)]


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    return sorted(
        f"{module} (layer {layer_of(module)}) imports {target} (layer {layer_of(target)})"
        for module, targets in graph.items()
        for target in targets
        if layer_of(target) > layer_of(module)
    )


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return found


def test_every_module_has_a_layer() -> None:
    for module in import_graph(PACKAGE_DIR):
        layer_of(module)


def test_imports_point_down() -> None:
    assert upward_imports(import_graph(PACKAGE_DIR)) == []


def test_no_import_cycles() -> None:
    assert cycles(import_graph(PACKAGE_DIR)) == []


@pytest.fixture
def package_copy(tmp_path: Path) -> Path:
    ignore = shutil.ignore_patterns("__pycache__")
    return Path(shutil.copytree(PACKAGE_DIR, tmp_path / "cozoo", ignore=ignore))


def test_a_planted_upward_import_is_found(package_copy: Path) -> None:
    conv = package_copy / "continual" / "conv.py"
    conv.write_text(conv.read_text() + "\n\ndef _planted():\n    from cozoo.commands import stream\n")
    found = upward_imports(import_graph(package_copy))
    assert found == ["cozoo.continual.conv (layer 2) imports cozoo.commands (layer 10)",
                     "cozoo.continual.conv (layer 2) imports cozoo.commands.stream (layer 10)"]


def test_a_planted_cycle_is_found(package_copy: Path) -> None:
    """Same-layer modules importing each other (here via a function-local import) form a cycle."""
    samplers = package_copy / "data" / "samplers.py"
    planted = "\n\ndef _planted():\n    from cozoo.data.kinetics import Path\n"
    samplers.write_text(samplers.read_text() + planted)
    found = cycles(import_graph(package_copy))
    assert any({"cozoo.data.kinetics", "cozoo.data.samplers"} <= set(cycle) for cycle in found)


def test_type_checking_imports_and_relative_imports_are_read_right(package_copy: Path) -> None:
    module = package_copy / "data" / "planted.py"
    module.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from cozoo.factory import x\n"
                      "from .video import read_frames\nfrom . import samplers\n")
    graph = import_graph(package_copy)
    assert graph["cozoo.data.planted"] == {"cozoo.data.video", "cozoo.data.samplers"}
