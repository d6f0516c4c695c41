"""The layer rule: the core imports only torch, torchvision, numpy, safetensors, tqdm and Pillow (never Streamlit,
plotly or Captum), so it runs headless; an optional package (ONNX export) only inside the function that needs it;
the app reaches the core only through its public names; every function stays short enough to read on one screen."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "resnet_demo"
ON_TOP = {"explain.py"}  # Captum's attributions: a layer of their own above the core, beside the app
CORE_THIRD_PARTY = {"torch", "torchvision", "numpy", "safetensors", "tqdm", "PIL"}
OPTIONAL = {"onnx", "onnxscript"}  # ONNX export: imported where it is used, so the core loads without them
FORBIDDEN = {"streamlit", "plotly", "captum"}
OPTIONAL = {"onnx", "onnxscript"}  # the ONNX export, an optional extra: imported only when a file is asked for
MAX_FUNCTION_LINES = 60


def _core_modules() -> list[Path]:
    return sorted(p for p in PACKAGE.glob("*.py") if p.name not in ON_TOP)


def _absolute(node: ast.ImportFrom, module_name: str) -> str:
    """The imported module's full name, relative imports resolved against `module_name`."""
    if not node.level:
        return node.module or ""
    base = module_name.split(".")[: -node.level]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(path: Path) -> list[tuple[str, ast.alias, bool]]:
    """(absolute module name, alias, whether it was a `from` import) of every import in the file, those inside
    functions included; `from resnet_demo import jobs` counts as importing resnet_demo.jobs."""
    name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(alias.name, alias, False) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = _absolute(node, name)
            found += [(f"{module}.{a.name}" if module == "resnet_demo" else module, a, True) for a in node.names]
    return found


def _top_level_modules(path: Path) -> set[str]:
    """The modules a file imports when it is itself imported (not inside a function)."""
    tree = ast.parse(path.read_text())
    found = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level:
            found.add(node.module or "")
    return {m.partition(".")[0] for m in found}


@pytest.mark.parametrize("path", _core_modules(), ids=lambda p: p.name)
def test_the_core_imports_only_its_own_dependencies(path):
    assert not _top_level_modules(path) & OPTIONAL, f"{path.name} needs an optional package to be imported"
    for module, _, _ in _imports(path):
        top, _, rest = module.partition(".")
        if top == "resnet_demo":
            layer = rest.split(".")[0]
            assert layer != "app" and f"{layer}.py" not in ON_TOP, f"{path.name} imports {module}, a layer above"
            continue
        assert top not in FORBIDDEN, f"{path.name} imports {module}"
        assert top in CORE_THIRD_PARTY | OPTIONAL or top in sys.stdlib_module_names or top == "__future__", \
            f"{path.name} imports {module}, which the core does not depend on"


def test_importing_the_whole_core_loads_no_ui_library_nor_an_optional_extra():
    modules = ", ".join(f"resnet_demo.{p.stem}" for p in _core_modules() if not p.stem.startswith("__"))
    code = f"import sys, {modules}; print(sorted({{m.split('.')[0] for m in sys.modules}} & set({sorted(FORBIDDEN | OPTIONAL)})))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300,
                         cwd=PACKAGE.parent).stdout
    assert out.strip() == "[]"


def _app_files() -> list[Path]:
    return sorted((PACKAGE / "app").rglob("*.py"))


@pytest.mark.parametrize("path", _app_files(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_the_app_uses_only_public_core_names(path):
    core_modules: set[str] = set()  # local names bound to core modules ("jobs" after `from ... import jobs`)
    for module, alias, is_from in _imports(path):
        if not module.startswith("resnet_demo.") or module.startswith("resnet_demo.app"):
            continue
        assert not any(part.startswith("_") for part in module.split(".")), f"{path.name} imports {module}"
        if is_from and not module.endswith("." + alias.name):
            assert not alias.name.startswith("_"), f"{path.name} imports {alias.name} from {module}"
        else:
            core_modules.add(alias.asname or alias.name.split(".")[-1])
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in core_modules:
            assert not node.attr.startswith("_"), f"{path.name} uses {node.value.id}.{node.attr}"


def test_no_function_is_longer_than_a_screen():
    long = []
    for path in sorted(PACKAGE.rglob("*.py")):  # the core, Captum's layer and the app alike
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, long
