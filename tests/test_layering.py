"""The house stays layered: every module of the package has a layer, imports go only to the layers its
own may use (``../shared/DESIGN.md``: ``cli -> train -> strategies -> ops -> graph``; data, checkpoint
and report import nothing above themselves), and no module imports itself back through others.

Imports are read from the source (``ast``), those inside functions included. A new module must be
added to ``LAYERS`` below: an unmapped module fails the test.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "selfexpand"

_CORE = ["errors", "validators", "settings", "hooks", "_version", "catalog", "events", "spaces"]
_GRAPH = ["", "activations", "conv", "conv_build", "counts", "export", "from_module", "fronts", "init", "modulators",
          "network", "parts", "plain", "rational", "saving", "size_modulators", "size_nets", "sparse", "spec"]
_OPS = ["", "channel_add", "channels", "checks", "compact", "conv_layers", "connection_edit", "donations", "edges",
        "edit", "event", "layers", "optimizer_state", "split_units", "storage", "units"]
_DATA = ["", "base", "cifar", "idx", "registry", "senn_tasks", "synthetic", "tabular"]
_REPORT = ["", "describe", "inactivity", "plots", "summary"]
_STRATEGIES = ["", "base", "method", "registry", "topology", "unit_values", "helpers", "helpers.edge_pruning",
               "helpers.edge_statistics", "helpers.start_values", "senn", "senn.chain_sample", "senn.conv_scores",
               "senn.natural_scores", "senn.proposals", "budget", "triggers", "triggers.checks", "triggers.interval",
               "triggers.plateau",
               "triggers.rounds", "selectors", "selectors.edge_significance", "selectors.fixed_units",
               "selectors.natural_expansion", "selectors.steepest_voting", "initializers", "initializers.edge_split",
               "initializers.firefly", "initializers.firefly_conv", "initializers.gradmax", "initializers.gradmax_conv",
               "initializers.natural_expansion", "initializers.net2net", "initializers.new_units",
               "initializers.shared_weights"]
_TRAIN = ["", "auxiliary", "callbacks", "context", "distributed", "flops", "growth_lr", "growth_step", "history", "metrics",
          "natural_gradient", "progress", "recorders", "settings", "tensorboard", "trainer"]
_PRESETS = ["", "baselines", "edge", "preset", "registry", "resolve", "senn", "size", "starts", "swe"]
_RUNS = ["runs", "twins", "runconfig", "rundir", "rungroup", "runlock", "runuse", "runchecks", "runwriter", "estimate", "sklearn",
         "lightning", "lightning_ckpt", "lightning_data"]
_SWEEP = ["", "engine", "grid", "report", "runner"]
_BENCH = ["", "front", "front_points", "jobs", "plots", "rows", "runner", "tables"]
_SEARCH = ["", "loop", "options", "pick", "plots", "pruner", "report", "space", "storage", "study", "trial", "workers"]


def _names(package: str, modules: list[str]) -> list[str]:
    return [".".join(p for p in (PACKAGE, package, m) if p) for m in modules]


#: every module of the package -> its layer
LAYERS: dict[str, str] = {
    **{m: "core" for m in _names("", _CORE)},
    **{m: "graph" for m in _names("graph", _GRAPH)},
    **{m: "ops" for m in _names("ops", _OPS)},
    **{m: "data" for m in _names("data", _DATA)},
    **{m: "checkpoint" for m in _names("", ["checkpoint"])},
    **{m: "report" for m in _names("report", _REPORT)},
    **{m: "strategies" for m in _names("strategies", _STRATEGIES)},
    **{m: "train" for m in _names("train", _TRAIN)},
    **{m: "presets" for m in _names("presets", _PRESETS)},
    **{m: "runs" for m in _names("", _RUNS) + _names("sweep", _SWEEP) + _names("bench", _BENCH)
                        + _names("search", _SEARCH)},
    **{m: "cli" for m in _names("", ["cli", "cli_parser", "cli_commands", "cli_batch", "cli_output", "cli_search", "cli_launch",
                                     "__main__"])},
    PACKAGE: "package",
}

#: layer -> the layers its modules may import (their own included)
ALLOWED: dict[str, set[str]] = {
    "core": {"core"},
    "graph": {"core", "graph"},
    "ops": {"core", "graph", "ops"},
    "data": {"core", "data"},
    "checkpoint": {"core", "graph", "checkpoint"},
    "report": {"core", "graph", "checkpoint", "report"},
    "strategies": {"core", "graph", "ops", "strategies"},
    "train": {"core", "graph", "ops", "data", "checkpoint", "report", "strategies", "train"},
    "presets": {"core", "graph", "strategies", "train", "presets"},
    "runs": {"core", "graph", "ops", "data", "checkpoint", "report", "strategies", "train", "presets", "runs"},
    "cli": {"core", "graph", "data", "report", "strategies", "train", "presets", "runs", "cli"},
    "package": set(LAYERS.values()),
}


def modules() -> dict[str, Path]:
    """Every module of the package, by dotted name."""
    out = {}
    for path in sorted((SRC / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules that module ``name`` imports (anywhere in it)."""
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[:len(base) - node.level + 1]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            targets = [f"{origin}.{a.name}" if f"{origin}.{a.name}" in known else origin for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:  # ``import selfexpand.graph.spec.x`` -> the module
                target = target.rpartition(".")[0]
            if target.startswith(PACKAGE) and target != name:
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imports(name, path, set(found)) for name, path in found.items()}


def violations(graph: dict[str, set[str]]) -> list[str]:
    """Unmapped modules, imports the layering forbids, and import circles, in words."""
    out = [f"{m} has no layer in LAYERS" for m in graph if m not in LAYERS]
    for source, targets in graph.items():
        for target in sorted(targets):
            if source in LAYERS and target in LAYERS and LAYERS[target] not in ALLOWED[LAYERS[source]]:
                out.append(f"{source} ({LAYERS[source]}) imports {target} ({LAYERS[target]})")
    out += [f"import circle: {' -> '.join(c)}" for c in circles(graph)]
    return out


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One path for each strongly connected group of modules larger than one (Tarjan)."""
    index, low, stack, on_stack, groups = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group) + [sorted(group)[0]])

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return groups


def test_every_module_has_a_layer_and_every_import_is_allowed():
    graph = import_graph()
    assert set(graph) == set(LAYERS), f"unmapped: {sorted(set(graph) - set(LAYERS))}, gone: " \
                                      f"{sorted(set(LAYERS) - set(graph))}"
    assert violations(graph) == []


def test_the_check_catches_a_planted_upward_import_and_a_circle():
    graph = import_graph()
    planted = {**graph, "selfexpand.graph.network": graph["selfexpand.graph.network"] | {"selfexpand.strategies.base"}}
    assert violations(planted) == ["selfexpand.graph.network (graph) imports selfexpand.strategies.base (strategies)"]
    planted = {**graph, "selfexpand.errors": {"selfexpand.validators"}}  # validators imports errors
    assert violations(planted) == ["import circle: selfexpand.errors -> selfexpand.validators -> selfexpand.errors"]
    planted = {**graph, "selfexpand.checkpoint": graph["selfexpand.checkpoint"] | {"selfexpand.train.natural_gradient"}}
    found = violations(planted)
    assert "selfexpand.checkpoint (checkpoint) imports selfexpand.train.natural_gradient (train)" in found
    assert any(v.startswith("import circle") for v in found)  # natural_gradient registers with checkpoint
    assert violations({**graph, "selfexpand.newmodule": set()}) == ["selfexpand.newmodule has no layer in LAYERS"]


def test_the_reader_resolves_relative_imports():
    graph = import_graph()
    assert "selfexpand.graph.spec" in graph["selfexpand.graph.network"]  # from .spec import ...
    assert "selfexpand.strategies.registry" in graph["selfexpand.strategies.triggers.plateau"]  # ..registry
    assert "selfexpand.strategies.triggers" in graph["selfexpand.strategies"]  # from . import triggers
    assert "selfexpand.errors" in graph["selfexpand.strategies.senn.chain_sample"]  # ...errors
