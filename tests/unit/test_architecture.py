"""The architecture, checked by machine so it stays true: the import graph's rules, each service
image's dependencies (the tagger without JAX, the router and ppm without PyTorch), and one
registry of Route strategies that the solver, the CLI and the proto all follow."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from importlib import metadata

import pytest

from hyper.api.messages import STRATEGIES
from scripts import dependencies, import_graph

HEAVY = {"jax", "jaxlib", "flax", "optax", "torch", "transformers", "sentence-transformers"}
FORBIDDEN_IN_IMAGE = {"hyper_tagger": {"jax", "jaxlib", "flax", "optax"},
                      "hyper_router": {"torch", "jax", "jaxlib"},
                      "hyper_ppm": {"torch", "jax", "jaxlib"},
                      "hyper_gateway": HEAVY}  # the trainer needs them all


def test_the_library_imports_no_service_and_no_service_imports_another():
    edges = import_graph.layer_edges()
    assert import_graph.violations(edges) == []
    assert not {target for (source, target) in edges if source in import_graph.LAYERS} - set(import_graph.LAYERS)
    assert set(import_graph.services()) == set(dependencies.SERVICE_EXTRAS)


def test_the_graph_check_sees_lazy_and_relative_imports(tmp_path):
    module = tmp_path / "servicer.py"
    module.write_text("from . import store\n\ndef f():\n    from hyper_ppm.fitting import fit_ppm\n")
    assert import_graph.imported_modules("hyper_router.servicer", module) >= {
        "hyper_router.store", "hyper_ppm.fitting"}


def third_party_imports(service: str) -> set[str]:
    """Top-level names of every non-hyper module that the service's code can import: its own
    modules and every library module they reach, function-level imports included."""
    known = import_graph.modules()
    pending = [m for m in known if import_graph.layer(m) == service]
    seen, names = set(pending), set()
    while pending:
        module = pending.pop()
        tree = ast.parse(known[module].read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                names.add(node.module.split(".")[0])
        for target in import_graph.imported_modules(module, known[module]):
            for candidate in (target, target.rpartition(".")[0]):
                if candidate in known and candidate not in seen:
                    seen.add(candidate)
                    pending.append(candidate)
    return {n for n in names if n not in sys.stdlib_module_names and n not in ("hyper", "__future__")}


@pytest.mark.parametrize("service", sorted(dependencies.SERVICE_EXTRAS))
def test_each_image_installs_what_its_code_imports_and_no_heavy_stranger(service):
    installed = dependencies.image_distributions(dependencies.SERVICE_EXTRAS[service])
    providers = metadata.packages_distributions()
    missing = {name: providers.get(name) for name in third_party_imports(service)
               if not {dependencies.canonical(d) for d in providers.get(name, [])} & installed}
    # vLLM is the tagger's optional GPU backend: its image is built with the `gpu` extra.
    missing.pop("vllm", None)
    assert missing == {}
    assert not installed & FORBIDDEN_IN_IMAGE.get(service, set())


def test_the_tagger_process_loads_no_jax_and_the_router_and_ppm_load_no_torch():
    probe = ("import sys, importlib; importlib.import_module(sys.argv[1]); "
             "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} & set(sys.argv[2:]))))")
    for module, forbidden in (("hyper_tagger.server", {"jax", "flax", "optax"}),
                              ("hyper_router.server", {"torch", "jax"}),
                              ("hyper_ppm.server", {"torch", "jax"}),
                              ("hyper_gateway.server", {"torch", "jax"})):
        loaded = subprocess.run([sys.executable, "-c", "import json; " + probe, module, *forbidden],
                                capture_output=True, text=True, check=True).stdout
        assert json.loads(loaded) == [], module


def test_one_strategy_registry_for_the_solver_the_cli_and_the_proto():
    from hyper.cli.main import build_parser
    from hyper_router.route_plan import SOLVERS

    assert set(SOLVERS) - {"cold_start"} == set(STRATEGIES) - {"auto"}  # auto takes one of them
    route = build_parser(["route"])._subparsers._group_actions[0].choices["route"]
    [strategy] = [a for a in route._actions if a.dest == "strategy"]
    assert list(strategy.choices) == list(STRATEGIES)
    proto = (import_graph.REPO / "proto" / "hyper" / "v1" / "router.proto").read_text()
    documented = re.search(r"// Strategies: (.*?)\(what", proto, re.DOTALL).group(1)
    assert re.findall(r'"(\w+)"', documented) == list(STRATEGIES)


def test_the_settings_page_lists_every_setting_as_the_code_defines_it():
    from scripts import settings_doc

    assert settings_doc.DOC.read_text() == settings_doc.render(), "regenerate: python scripts/settings_doc.py"


def test_a_layer_may_import_its_own_and_lower_layers_only():
    assert import_graph.allowed("cli", "core") and import_graph.allowed("api", "api")
    assert not import_graph.allowed("core", "api") and not import_graph.allowed("method", "workflows")
    assert import_graph.allowed("hyper_router", "reports") and not import_graph.allowed("reports", "hyper_router")
    assert not import_graph.allowed("hyper_router", "hyper_ppm")
    assert import_graph.layer("hyper.core.schema") == "core" and import_graph.layer("hyper.v1.router_pb2") == "api"
    assert import_graph.layer("hyper_router.routing") == "hyper_router"


def test_every_benchmark_module_imports():
    """A benchmark is run by hand, rarely: a name moved in the library must not leave one
    broken until then (bench/routing.py imported `solve` from where it no longer was)."""
    modules = sorted(path.stem for path in (import_graph.REPO / "bench").glob("*.py") if path.stem != "__init__")
    done = subprocess.run([sys.executable, "-c", "; ".join(f"import bench.{m}" for m in modules)],
                          cwd=import_graph.REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
