"""Architecture rules for src/ganvae, checked on the source with ``ast``.

* no import cycles between modules;
* top-level packages/modules import only downward in ``LAYERS``;
* ``cli`` and ``serve`` go through ``ganvae.api`` only;
* nothing outside ``models``/``nets`` dispatches on model names, model classes or model attributes.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PKG = SRC / "ganvae"

LAYERS = [
    ["errors", "version"],                                         # the bottom: no ganvae imports
    ["rng", "registry", "util"],                                   # generic helpers
    ["config"],                                                    # generic config machinery (no sections)
    ["images", "augment", "nets", "objectives", "data"],          # building blocks
    ["models"],                                                    # nets + objective + phases
    ["metrics", "training", "latent"],                             # take models and tensors, not run folders
    ["apps"],                                                      # downstream uses: augmentation, anomaly scores
    ["privacy"],                                                   # DP as a loop plugin; the leakage audit
    ["modelcard"],                                                 # model/README.md, written by export
    ["export", "runfolder"],                                       # files: model export, RunConfig, info
    ["report"],
    ["api"],                                                       # the one module that wires packages together
    ["serve"],
    ["cli"],
    ["__main__"],                                                  # `python -m ganvae`, `torchrun -m ganvae`
    ["__init__"],                                                  # the package itself (ganvae/__init__.py)
]

CLI_SERVE_ALLOWED = ("ganvae.api", "ganvae.errors", "ganvae.version", "ganvae.serve", "ganvae.cli")
PROBE_ATTRS = {"D", "G", "encoder", "decoder", "likelihood", "reconstruct", "encode", "split",
               "_labels", "critic"}


# ---------------------------------------------------------------- import graph

def module_files(root: Path = PKG) -> dict[str, Path]:
    """``{"ganvae.training.loop": path, "ganvae.training": .../__init__.py, ...}``."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def resolve_from(module: str, package: bool, node: ast.ImportFrom) -> str:
    """The absolute module named by ``from <node.level dots><node.module> import ...``."""
    if node.level == 0:
        return node.module or ""
    base = module.split(".") if package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(module: str, tree: ast.AST, package: bool, modules: set[str]) -> set[str]:
    """Modules of ``ganvae`` that ``module`` imports anywhere in ``tree`` (function bodies too)."""
    edges = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            edges.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            target = resolve_from(module, package, node)
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                edges.add(sub if sub in modules else target)
    return {e for e in edges if e == "ganvae" or e.startswith("ganvae.")}


def build_graph(root: Path = PKG) -> dict[str, set[str]]:
    files = module_files(root)
    modules = set(files)
    return {name: imports_of(name, ast.parse(path.read_text(), str(path)), is_package(path), modules)
            for name, path in files.items()}


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm; returns every strongly connected component."""
    index, low, on_stack, stack, comps = {}, {}, set(), [], []

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
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            comps.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return comps


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    return [c for c in strongly_connected(graph) if len(c) > 1 or c[0] in graph.get(c[0], ())]


def top_name(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


# ---------------------------------------------------------------- model dispatch detector

def find_model_dispatch(source: str, filename: str, model_names, model_classes) -> list[str]:
    """``file:line: what`` for each name/class/attribute dispatch on models in ``source``."""
    names = set(model_names)
    suffixes = names | {"gan", "vae"}
    hits = []

    def consts(node):
        elts = node.elts if isinstance(node, (ast.Tuple, ast.List, ast.Set)) else [node]
        return [e.value for e in elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]

    def mentions_class(node) -> bool:
        return any((isinstance(n, ast.Name) and n.id in model_classes)
                   or (isinstance(n, ast.Attribute) and n.attr in model_classes) for n in ast.walk(node))

    for node in ast.walk(ast.parse(source, filename)):
        where = f"{filename}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Compare):
            found = [c for side in [node.left, *node.comparators] for c in consts(side) if c in names]
            if found:
                hits.append(f"{where}: comparison with model name(s) {found}")
        elif isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Attribute) and func.attr in ("endswith", "startswith"):
                found = [c for a in node.args for c in consts(a) if c in suffixes]
                if found:
                    hits.append(f"{where}: .{func.attr}({found}) on a model name")
            elif isinstance(func, ast.Name) and func.id in ("isinstance", "issubclass"):
                if len(node.args) >= 2 and mentions_class(node.args[1]):
                    hits.append(f"{where}: {func.id}() against a model class")
            elif isinstance(func, ast.Name) and func.id == "hasattr" and len(node.args) >= 2:
                found = [c for c in consts(node.args[1]) if c in PROBE_ATTRS]
                if found:
                    hits.append(f"{where}: hasattr(..., {found[0]!r}) probes the model")
    return hits


def model_class_names() -> set[str]:
    return {n.name for path in (PKG / "models").glob("*.py")
            for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.ClassDef)}


# ---------------------------------------------------------------- tests

def test_graph_builder_finds_edges():
    graph = build_graph()
    assert len(graph["ganvae.api"]) >= 3, graph["ganvae.api"]
    assert any(m.startswith("ganvae.nets") for m in graph["ganvae.models.gan"]), graph["ganvae.models.gan"]


def test_relative_import_resolution():
    mods = {"ganvae", "ganvae.rng", "ganvae.models", "ganvae.models.base", "ganvae.training",
            "ganvae.training.loop"}
    src = "from .. import rng, __version__\nfrom .base import X\nimport torch\n"
    assert imports_of("ganvae.models.gan", ast.parse(src), False, mods) == {
        "ganvae.rng", "ganvae", "ganvae.models.base"}
    assert imports_of("ganvae.training", ast.parse("from .loop import T\nfrom . import x"), True, mods) == {
        "ganvae.training.loop", "ganvae.training"}


def test_cycle_finder_on_tiny_graph():
    assert cycles({"a": {"b"}, "b": {"a"}, "c": set()}) == [["a", "b"]]
    assert cycles({"a": {"a"}, "b": set()}) == [["a"]]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_no_import_cycles():
    graph = build_graph()
    lines = []
    for comp in cycles(graph):
        lines.append("cycle among: " + ", ".join(comp))
        lines += [f"    {a} -> {b}" for a in comp for b in sorted(graph[a]) if b in comp]
    assert not lines, "import cycles (edges inside each cycle shown):\n" + "\n".join(lines)


def test_layer_order():
    layer_of = {name: i for i, layer in enumerate(LAYERS) for name in layer}
    graph = build_graph()
    unknown = sorted({top_name(m) for m in graph} - set(layer_of))
    assert not unknown, (f"top-level module(s) {unknown} under src/ganvae are not in LAYERS: "
                         "place each in tests/test_architecture.py LAYERS")
    bad = []
    for a in sorted(graph):
        for b in sorted(graph[a]):
            ta, tb = top_name(a), top_name(b)
            if ta == tb:
                continue
            la, lb = layer_of[ta], layer_of[tb]
            if lb >= la:
                bad.append(f"{a} -> {b} (layer {la} -> layer {lb})")
    assert not bad, "imports against LAYERS (only strictly lower layers allowed):\n" + "\n".join(bad)


def test_cli_and_serve_call_only_api():
    graph = build_graph()
    bad = [f"{a} -> {b}" for a in sorted(graph) if top_name(a) in ("cli", "serve")
           for b in sorted(graph[a])
           if not any(b == ok or b.startswith(ok + ".") for ok in CLI_SERVE_ALLOWED)]
    assert not bad, "cli/serve may import only ganvae.api, errors, version, serve:\n" + "\n".join(bad)


def test_dispatch_detector_finds_hits():
    src = 'if name.endswith("gan"):\n    pass\nisinstance(m, GAN)\nhasattr(m, "D")\n'
    assert len(find_model_dispatch(src, "x.py", ["dcgan"], {"GAN"})) == 3


def test_no_model_dispatch_outside_models():
    from ganvae.models import MODELS

    names, classes = MODELS.names(), model_class_names()
    assert "dcgan" in names and "GAN" in classes
    hits = []
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        if rel.startswith(("ganvae/models/", "ganvae/nets/")):
            continue
        hits += find_model_dispatch(path.read_text(), rel, names, classes)
    assert not hits, "model dispatch outside ganvae/models (move it into the model):\n" + "\n".join(hits)
