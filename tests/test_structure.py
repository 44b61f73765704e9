"""The code's structure, measured from its imports: no cycle, imports one way, inert profiles, thin CLIs, and each
weight-file extension spelled in one module.

Layers, top to bottom (a module may import its own package, a lower layer, and a peer of its layer one way only):
CLIs -> training, evaluation -> model, degradations, metrics, losses, optimizer, visualization -> data -> imaging
-> utils. profiles.py is data: it imports nothing of the project, and only CLIs, training and evaluation read it.
"""
import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SKIP = {"tests", "benchmarks", "testing", "docs", "output", "sample", "sample_BIN"}
CLIS = ("train", "bench", "demo", "convert")
CLI_MODULES = set(CLIS) | {"degradations.preview", "visualization.attention_maps"}


def _modules():
    modules = {}
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT)
        if rel.parts[0] in SKIP or any(p.startswith(".") for p in rel.parts):
            continue
        name = ".".join(rel.with_suffix("").parts)
        modules[name.removesuffix(".__init__")] = path
    return modules


def _graph():
    modules = _modules()

    def resolve(name):
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    edges = set()
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(p for p in parts + [base] if p)
                targets = [base] + [f"{base}.{a.name}" for a in node.names]
            for target in targets:
                found = resolve(target)
                if found and found != name:
                    edges.add((name, found))
    return modules, edges


def _cycles(modules, edges):
    """Strongly connected groups of more than one module (Tarjan)."""
    graph = {m: sorted(b for a, b in edges if a == m) for m in modules}
    index, low, stack, on, groups, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in graph:
        if v not in index:
            visit(v)
    return groups


def layer(module):
    top = module.split(".")[0]
    if module in CLI_MODULES:
        return 6
    return {"training": 5, "evaluation": 5, "model": 4, "degradations": 4, "metrics": 4, "losses": 4, "optimizer": 4,
            "visualization": 4, "data": 3, "imaging": 2, "utils": 1, "profiles": 0}.get(top)


@pytest.fixture(scope="module")
def graph():
    return _graph()


def test_no_import_cycle(graph):
    modules, edges = graph
    assert _cycles(modules, edges) == []
    print(f"{len(modules)} modules, {len(edges)} import edges, no cycle")


def test_imports_go_one_way(graph):
    _, edges = graph
    upward = []
    for a, b in sorted(edges):
        la, lb = layer(a), layer(b)
        if la is None or lb is None or a.split(".")[0] == b.split(".")[0]:
            continue
        if b == "profiles":
            if la < 5:  # a network, a metric or a dataset never knows a profile
                upward.append((a, b))
        elif lb > la:
            upward.append((a, b))
    assert upward == []


def test_profiles_import_nothing_of_the_project(graph):
    _, edges = graph
    assert [b for a, b in edges if a == "profiles"] == []


def test_networks_know_no_trainer_dataset_metric_or_profile(graph):
    _, edges = graph
    archs = [(a, b) for a, b in edges if a.startswith("model.archs")]
    assert archs and not [(a, b) for a, b in archs if b.split(".")[0] in ("training", "evaluation", "data",
                                                                          "metrics", "profiles", "degradations")]


@pytest.mark.parametrize("cli", CLIS)
def test_clis_are_thin(cli):
    lines = len((ROOT / f"{cli}.py").read_text().splitlines())
    assert lines < 200, f"{cli}.py has {lines} lines"


def test_each_weight_file_extension_is_spelled_in_one_module():
    spelled = {}
    for name, path in _modules().items():
        text = path.read_text()
        for ext in (".keras", ".h5", ".hdf5", ".pth", ".pt", ".safetensors", ".onnx", ".tflite"):
            # a string that is exactly the extension: how code tests a file name
            if re.search(r"""["']""" + re.escape(ext) + r"""["']""", text):
                spelled.setdefault(ext, set()).add(name)
    assert {ext: mods for ext, mods in spelled.items() if mods != {"model.io"}} == {}
