"""No code-executing deserialisation anywhere in the tree: no pickle (or its relatives), no
torch.load without weights_only, no NumPy pickles, no unsafe YAML, no eval/exec."""

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TREES = ("src", "services", "bench", "scripts", "tests")
PICKLING_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve", "marshal"}


def python_files() -> list[Path]:
    return sorted(p for tree in TREES for p in (REPO / tree).rglob("*.py") if "_pb2" not in p.name)


def keyword(call: ast.Call, name: str):
    return next((k.value for k in call.keywords if k.arg == name), None)


def is_true(node) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


def problems_in(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        where = f"{path.relative_to(REPO) if path.is_relative_to(REPO) else path}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            found += [f"{where}: imports {n}" for n in names if n.split(".")[0] in PICKLING_MODULES]
        if not isinstance(node, ast.Call):
            continue
        name = ast.unparse(node.func)
        if name in ("eval", "exec") or name.endswith(("read_pickle", "yaml.unsafe_load", "yaml.full_load")):
            found.append(f"{where}: {name}()")
        if name == "yaml.load" and "SafeLoader" not in ast.unparse(keyword(node, "Loader") or ast.Constant(None)):
            found.append(f"{where}: yaml.load without SafeLoader")
        if (name.endswith("np.load") or name.endswith("numpy.load")) and is_true(keyword(node, "allow_pickle")):
            found.append(f"{where}: np.load(allow_pickle=True)")
        if name == "torch.load" and not is_true(keyword(node, "weights_only")):
            found.append(f"{where}: torch.load without weights_only=True")
    return found


def test_nothing_in_the_tree_deserialises_by_running_code():
    files = python_files()
    assert len(files) > 100  # the scan does see the tree
    assert [p for f in files for p in problems_in(f)] == []


@pytest.mark.parametrize("source", ["import pickle", "from joblib import load", "np.load(f, allow_pickle=True)",
                                    "torch.load(f)", "yaml.load(s)", "eval(s)"])
def test_the_scan_catches_each_kind(tmp_path, source):
    path = tmp_path / "probe.py"
    path.write_text(source + "\n")
    assert problems_in(path)
