"""The import graph between the library and the services, from the source files (no import).

    python scripts/import_graph.py            # edges between layers, with the modules behind them
    python scripts/import_graph.py --check    # exit 1 if an edge breaks the architecture

The rules: the library (`hyper.*` in src/hyper) imports no service; a service imports the
library and itself, never another service. Imports inside functions count too: a lazy import
is still a dependency.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from layout import LIBRARY, modules, service_of, services  # noqa: E402


def imported_modules(module: str, path: Path) -> set[str]:
    """Every `hyper` module that `module` imports, anywhere in its file."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            found.update(f"{base}.{alias.name}" for alias in node.names)
            found.add(base)
    return {name for name in found if name == LIBRARY or name.startswith(LIBRARY + ".")}


def layer(module: str, service_names: list[str]) -> str:
    return service_of(module, service_names) or "library"


def layer_edges() -> dict[tuple[str, str], set[tuple[str, str]]]:
    """(importing layer, imported layer) -> the (module, imported module) pairs behind it."""
    service_names = services()
    known = modules()
    edges: dict[tuple[str, str], set[tuple[str, str]]] = defaultdict(set)
    for module, path in known.items():
        for target in imported_modules(module, path):
            # `from hyper.x import name` names a module only when hyper.x.name is one.
            if target not in known and target.rpartition(".")[0] in known:
                target = target.rpartition(".")[0]
            if target in known and target != module:
                edges[(layer(module, service_names), layer(target, service_names))].add((module, target))
    return edges


def violations(edges: dict[tuple[str, str], set[tuple[str, str]]]) -> list[str]:
    broken = []
    for (source, target), pairs in sorted(edges.items()):
        if target != "library" and target != source:
            broken += [f"{a} imports {b}" for a, b in sorted(pairs)]
    return broken


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 on a forbidden edge")
    args = parser.parse_args()
    edges = layer_edges()
    for (source, target), pairs in sorted(edges.items()):
        flag = "" if target in ("library", source) else "   <-- forbidden"
        print(f"{source:>16s} -> {target:<16s} {len(pairs):4d} imports{flag}")
    broken = violations(edges)
    for line in broken:
        print(f"forbidden: {line}")
    if args.check and broken:
        sys.exit(1)


if __name__ == "__main__":
    main()
