"""The import graph of the library and the services, read from the source files (nothing is
imported), and the architecture's rules over it.

    python scripts/import_graph.py            # edges between layers, with their counts
    python scripts/import_graph.py --check    # exit 1 if an edge breaks a rule

The tree is the import tree: `src/hyper/<layer>/<module>.py` is `hyper.<layer>.<module>`, and
`services/<name>/hyper_<name>/<module>.py` is `hyper_<name>.<module>`. The rules:
- the library's layers are ordered (LAYERS, lowest first): a module imports its own layer and
  the layers below it, never one above;
- the library imports no service; a service imports the library and itself, never another.
Imports inside functions count too: a lazy import is still a dependency.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LIBRARY = "hyper"
# The library's layers, lowest first, and what each holds.
LAYERS = {
    "core": "types, errors, settings, the feature catalogue, statistics, files",
    "data": "reading and validating datasets; which label plays which part",
    "method": "the paper's method: candidates, performance and error models, proxy reward models",
    "judges": "AI judges: the saved CPU judge, its training, LM judges behind endpoints",
    "api": "the contract: typed messages, proto conversions, gRPC clients and the server harness",
    "infra": "processes, Jobs, the database, dashboards",
    "reports": "plots and the route report",
    "labelling": "after a route: annotation tools, judging journals, the hybrid dataset",
    "workflows": "use cases over the services: the training loop, the demo",
    "cli": "the `hyper` command",
}
# Generated protobuf code is the contract: it sits in the api layer.
LAYER_OF_PACKAGE = {"v1": "api"}


def source_roots(repo: Path = REPO) -> dict[str, Path]:
    """Top-level package -> its folder: the library, then every service."""
    roots = {LIBRARY: repo / "src" / LIBRARY}
    for init in sorted(repo.glob("services/*/hyper_*/__init__.py")):
        roots[init.parent.name] = init.parent
    return roots


def services(repo: Path = REPO) -> list[str]:
    return [name for name in source_roots(repo) if name != LIBRARY]


def modules(repo: Path = REPO) -> dict[str, Path]:
    """Module name -> file, for every .py file of the library and the services."""
    found = {}
    for package, folder in source_roots(repo).items():
        for path in sorted(folder.rglob("*.py")):
            parts = path.relative_to(folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join((package, *parts))] = path
    return found


def layer(module: str) -> str:
    """A service's name, or the library layer a module is in ("library" for hyper itself)."""
    top, _, rest = module.partition(".")
    if top != LIBRARY:
        return top
    first = rest.partition(".")[0]
    return LAYER_OF_PACKAGE.get(first, first) if first else LIBRARY


def imported_modules(module: str, path: Path) -> set[str]:
    """Every library or service module that `module` imports, anywhere in its file."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    roots = set(source_roots())
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
    return {name for name in found if name.split(".")[0] in roots}


def layer_edges() -> dict[tuple[str, str], set[tuple[str, str]]]:
    """(importing layer, imported layer) -> the (module, imported module) pairs behind it."""
    known = modules()
    edges: dict[tuple[str, str], set[tuple[str, str]]] = defaultdict(set)
    for module, path in known.items():
        for target in imported_modules(module, path):
            # `from hyper.x import name` names a module only when hyper.x.name is one.
            if target not in known and target.rpartition(".")[0] in known:
                target = target.rpartition(".")[0]
            if target in known and target != module:
                edges[(layer(module), layer(target))].add((module, target))
    return edges


def allowed(source: str, target: str) -> bool:
    if source == target or target == LIBRARY:
        return True
    if target not in LAYERS:  # a service
        return False
    if source not in LAYERS:  # a service imports any library layer
        return True
    return list(LAYERS).index(target) <= list(LAYERS).index(source)


def violations(edges: dict[tuple[str, str], set[tuple[str, str]]]) -> list[str]:
    return [f"{a} ({source}) imports {b} ({target})"
            for (source, target), pairs in sorted(edges.items()) if not allowed(source, target)
            for a, b in sorted(pairs)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 on a forbidden edge")
    args = parser.parse_args()
    edges = layer_edges()
    for (source, target), pairs in sorted(edges.items()) if not args.check else ():
        flag = "" if allowed(source, target) else "   <-- forbidden"
        print(f"{source:>16s} -> {target:<16s} {len(pairs):4d} imports{flag}")
    broken = violations(edges)
    for line in broken:
        print(f"forbidden: {line}")
    if args.check and broken:
        sys.exit(1)


if __name__ == "__main__":
    main()
