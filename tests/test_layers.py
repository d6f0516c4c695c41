"""The floor plan: the package's subpackages are its layers, and a layer imports only from those below it.

From the bottom up: base, nets, data, store, training, interpret, server; the app and the command line on top.
Everything below interpret is the core, which imports only torch, torchvision, numpy, safetensors, tqdm and
Pillow (never Streamlit, plotly or Captum), so it runs headless; Captum enters in interpret, Streamlit and
plotly only in the app. No two files import each other, directly or round a circle. The app reaches the rest
only through public names, and every function stays short enough to read on one screen."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "resnet_demo"
# What each layer may import from the package: the layers below it (interpret and training stand side by side).
MAY_IMPORT = {
    "base": set(),
    "nets": {"base"},
    "data": {"base", "nets"},
    "store": {"base", "nets", "data"},
    "training": {"base", "nets", "data", "store"},
    "interpret": {"base", "nets", "data", "store"},
    "server": {"base", "nets", "data", "store", "training"},
    "app": {"base", "nets", "data", "store", "training", "interpret", "server", "app"},
    "cli": {"base", "nets", "data", "store", "training", "interpret", "server"},
}
CORE = ("base", "nets", "data", "store", "training", "server")
CORE_THIRD_PARTY = {"torch", "torchvision", "numpy", "safetensors", "tqdm", "PIL"}
OPTIONAL = {"onnx", "onnxscript"}  # the ONNX export, an optional extra: imported only when a file is asked for
THIRD_PARTY = {layer: CORE_THIRD_PARTY for layer in CORE} | {
    "interpret": CORE_THIRD_PARTY | {"captum"},
    "cli": CORE_THIRD_PARTY,
    "app": CORE_THIRD_PARTY | {"captum", "streamlit", "plotly", "pandas"},  # pandas comes with Streamlit
}
MAX_FUNCTION_LINES = 60


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _layer(module: str) -> str | None:
    """The layer a resnet_demo module belongs to: its subpackage, or 'cli'; None for the package itself."""
    parts = module.split(".")
    if parts[0] != "resnet_demo" or len(parts) < 2 or parts[1] in ("__main__",):
        return None
    return parts[1]


def _absolute(node: ast.ImportFrom, module_name: str, is_package: bool) -> str:
    """The imported module's full name, relative imports resolved against `module_name`."""
    if not node.level:
        return node.module or ""
    base = module_name.split(".")
    base = base[: len(base) - node.level + (1 if is_package else 0)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(path: Path) -> list[tuple[str, ast.alias, bool, bool]]:
    """(absolute module name, alias, whether it was a `from` import, whether at the top level) of every import in
    the file, those inside functions included; `from resnet_demo.store import registry` counts as importing
    resnet_demo.store.registry."""
    name = _module_name(path)
    tree = ast.parse(path.read_text())
    top = set(map(id, tree.body))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, alias, False, id(node) in top) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = _absolute(node, name, path.name == "__init__.py")
            for a in node.names:
                sub = f"{module}.{a.name}"
                is_module = (PACKAGE.parent / sub.replace(".", "/")).with_suffix(".py").is_file() or \
                    (PACKAGE.parent / sub.replace(".", "/")).is_dir()
                found.append((sub if module.startswith("resnet_demo") and is_module else module, a, True,
                              id(node) in top))
    return found


def _files() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__main__.py")


def test_every_module_lives_in_a_layer():
    loose = [p.name for p in PACKAGE.glob("*.py") if p.name not in ("__init__.py", "__main__.py", "cli.py")]
    assert not loose, f"modules outside the layers: {loose}"
    layers = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    assert layers == set(MAY_IMPORT) - {"cli"}


@pytest.mark.parametrize("layer", sorted(set(MAY_IMPORT) - {"cli"}))
def test_each_layer_says_what_it_holds_and_what_it_may_import(layer):
    doc = ast.get_docstring(ast.parse((PACKAGE / layer / "__init__.py").read_text()))
    assert doc and "Imports:" in doc, f"resnet_demo/{layer}/__init__.py needs a docstring naming what it may import"


@pytest.mark.parametrize("path", _files(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_a_layer_imports_only_from_the_layers_below_it(path):
    layer = _layer(_module_name(path))
    if layer is None:
        return
    allowed_packages = THIRD_PARTY[layer] | OPTIONAL
    for module, _, _, at_top in _imports(path):
        top = module.partition(".")[0]
        if top == "resnet_demo":
            target = _layer(module)
            assert target is None or target == layer or target in MAY_IMPORT[layer], \
                f"{path.relative_to(PACKAGE)} ({layer}) imports {module} ({target}), a layer above or beside it"
            continue
        assert not (at_top and top in OPTIONAL), f"{path.name} needs the optional {top} to be imported"
        assert top in allowed_packages or top in sys.stdlib_module_names or top == "__future__", \
            f"{path.relative_to(PACKAGE)} ({layer}) imports {module}, which that layer does not depend on"


def test_no_files_import_each_other_in_a_circle():
    graph: dict[str, set[str]] = {}
    for path in _files():
        me = _module_name(path)
        graph[me] = {m for m, *_ in _imports(path) if m.startswith("resnet_demo.") and m != me
                     and (PACKAGE.parent / m.replace(".", "/")).with_suffix(".py").is_file()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            assert state.get(nxt) != 1, "import circle: " + " -> ".join(path[path.index(nxt):] + [nxt]) \
                if nxt in path else f"import circle through {nxt}"
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])


def test_importing_the_whole_core_loads_no_ui_library_nor_an_optional_extra():
    modules = ", ".join(_module_name(p) for p in _files() if _layer(_module_name(p)) in CORE + ("cli",))
    forbidden = {"streamlit", "plotly", "captum"} | OPTIONAL
    code = f"import sys, {modules}; print(sorted({{m.split('.')[0] for m in sys.modules}} & set({sorted(forbidden)})))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300,
                         cwd=PACKAGE.parent).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("path", sorted((PACKAGE / "app").rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_the_app_uses_only_public_names_of_the_layers_below(path):
    modules: set[str] = set()  # local names bound to modules below the app ("jobs" after `from ... import jobs`)
    for module, alias, is_from, _ in _imports(path):
        if not module.startswith("resnet_demo.") or module.startswith("resnet_demo.app"):
            continue
        assert not any(part.startswith("_") for part in module.split(".")), f"{path.name} imports {module}"
        if is_from and not module.endswith("." + alias.name):
            assert not alias.name.startswith("_"), f"{path.name} imports {alias.name} from {module}"
        else:
            modules.add(alias.asname or alias.name.split(".")[-1])
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in modules:
            assert not node.attr.startswith("_"), f"{path.name} uses {node.value.id}.{node.attr}"


def test_no_function_is_longer_than_a_screen():
    long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, long
