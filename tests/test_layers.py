"""The folders are the layers (docs/architecture.md): every import of the package, lazy ones
included, runs down the layers or stays inside its own folder, and core/ needs nothing of the
package but the settings and the errors."""

from __future__ import annotations

import ast
from pathlib import Path

import diffuseq_cli

PACKAGE = Path(diffuseq_cli.__file__).parent

# Higher imports lower; a folder (a subpackage) is one layer.
LAYERS = {
    "errors": 0, "_version": 0, "threads": 0, "processes": 0,
    "config": 1, "textio": 1, "precision": 1,
    "core": 2,
    "modelfiles": 3, "evaluation": 3,
    "generation": 4,
    "training": 5, "api": 5,
    "commands": 6, "__init__": 6,
    "cli": 7,
    "__main__": 8,
}
CORE_MAY_USE = {"core", "config", "errors"}


def unit(path: Path) -> str:
    """The layer unit of a module file: its top-level folder, or the module itself."""
    return path.relative_to(PACKAGE).with_suffix("").parts[0]


def imported_units(path: Path) -> set[str]:
    """Top-level units of the package that ``path`` imports, anywhere in the file."""
    package = ["diffuseq_cli", *path.relative_to(PACKAGE).parent.parts]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                parts = base + (node.module.split(".") if node.module else [])
            else:
                parts = (node.module or "").split(".")
            if parts[0] != "diffuseq_cli":
                continue
            if len(parts) == 1:  # from diffuseq_cli import x: x is the unit
                found |= {alias.name for alias in node.names}
            else:
                found.add(parts[1])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "diffuseq_cli" and len(parts) > 1:
                    found.add(parts[1])
    return found


def modules():
    return sorted(p for p in PACKAGE.rglob("*.py") if "models" not in p.relative_to(PACKAGE).parts[:1])


def test_every_module_has_a_layer():
    assert {unit(p) for p in modules()} == set(LAYERS)


def test_imports_run_down_the_layers():
    wrong = []
    for path in modules():
        mine = unit(path)
        for other in imported_units(path) - {mine, "__version__", "DiffuSeq"}:
            if LAYERS[other] >= LAYERS[mine]:
                wrong.append(f"{path.relative_to(PACKAGE)} imports {other}")
    assert not wrong, wrong


def test_core_imports_only_settings_and_errors():
    for path in (PACKAGE / "core").glob("*.py"):
        assert imported_units(path) <= CORE_MAY_USE, path.name
