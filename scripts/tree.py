"""The Python tree of a revision, folder by folder, with each module's line count.

    python scripts/tree.py            # the working tree's committed HEAD
    python scripts/tree.py 9cc032f    # any revision: compare a layout before and after
"""

from __future__ import annotations

import subprocess
import sys
from collections import defaultdict
from pathlib import PurePosixPath

ROOTS = ("src/", "services/", "bench/", "harness/", "scripts/", "tests/")


def files(revision: str) -> list[str]:
    listed = subprocess.run(["git", "ls-tree", "-r", "--name-only", revision], capture_output=True, text=True,
                            check=True).stdout.split()
    return [f for f in listed if f.endswith(".py") and f.startswith(ROOTS) and "/v1/" not in f]


def lines(revision: str, path: str) -> int:
    return subprocess.run(["git", "show", f"{revision}:{path}"], capture_output=True, text=True,
                          check=True).stdout.count("\n")


def main(revision: str) -> None:
    folders: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for path in files(revision):
        folders[str(PurePosixPath(path).parent)].append((PurePosixPath(path).name, lines(revision, path)))
    total = 0
    for folder in sorted(folders):
        modules = sorted(folders[folder])
        size = sum(n for _, n in modules)
        total += size
        print(f"{folder}/  ({len(modules)} modules, {size} lines)")
        print("    " + "  ".join(f"{name[:-3]} {n}" for name, n in modules))
    print(f"{sum(len(m) for m in folders.values())} modules, {total} lines in {len(folders)} folders")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "HEAD")
