"""The package's shape holds: public names report ``prefect_ds`` as their module, every
exception a user can meet is exported, core code asks formats only through the declared
protocols, no module imports in a circle, and the deprecated alias still works."""

from __future__ import annotations

import ast
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import prefect_ds

SRC = Path(prefect_ds.__file__).resolve().parent
CORE = [p for p in SRC.rglob("*.py") if "formats" not in p.relative_to(SRC).parts]
MODULES = sorted(
    ".".join(("prefect_ds", *p.relative_to(SRC).with_suffix("").parts)).removesuffix(".__init__")
    for p in SRC.rglob("*.py")
)


@pytest.mark.parametrize("name", [n for n in prefect_ds.__all__ if n != "DSTaskRunner"])
def test_public_names_report_the_package_as_their_module(name: str) -> None:
    obj = getattr(prefect_ds, name)
    if isinstance(obj, type) or hasattr(obj, "__code__"):
        assert obj.__module__ == "prefect_ds", f"{name} reports {obj.__module__}"


def test_the_lazy_runner_reports_the_package_too() -> None:
    assert prefect_ds.DSTaskRunner.__module__ == "prefect_ds"


def test_every_exception_defined_anywhere_is_exported() -> None:
    """An exception class defined in any module must be public: users catch them."""
    defined = set()
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and node.name.endswith(("Error", "Timeout")):
                defined.add(node.name)
    internal = {"LayoutError"}  # the hdf codec's own signal, turned into CorruptTargetError
    assert defined - internal <= set(prefect_ds.__all__), defined - set(prefect_ds.__all__)


def test_all_exceptions_live_in_one_module() -> None:
    for path in SRC.rglob("*.py"):
        if path.name == "_errors.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and any(
                    isinstance(b, ast.Name) and b.id.endswith("Error") for b in node.bases):
                assert node.name == "LayoutError", f"{path.name} defines {node.name}"


def _imported_modules(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


@pytest.mark.parametrize("path", CORE, ids=lambda p: str(p.relative_to(SRC)))
def test_core_never_imports_a_concrete_format(path: Path) -> None:
    if path.name == "_registry.py":
        return
    assert not any(m.startswith("prefect_ds.formats") for m in _imported_modules(path))


@pytest.mark.parametrize("path", CORE, ids=lambda p: str(p.relative_to(SRC)))
def test_core_never_branches_on_file_format(path: Path) -> None:
    source = path.read_text()
    assert "isinstance(fmt, FileFormat)" not in source
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "isinstance":
            classes = node.args[1]
            names = [e.id for e in getattr(classes, "elts", [classes]) if isinstance(e, ast.Name)]
            assert "FileFormat" not in names, f"{path.name}:{node.lineno}"


def _module_level_imports(path: Path) -> set[str]:
    """prefect_ds modules imported at import time (not in functions, not TYPE_CHECKING)."""
    found: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        for inner in ast.walk(node) if isinstance(node, (ast.Try, ast.If)) else [node]:
            if isinstance(inner, ast.ImportFrom) and (inner.module or "").startswith("prefect_ds"):
                submodules = {f"{inner.module}.{a.name}" for a in inner.names} & set(MODULES)
                found.update(submodules or {inner.module or ""})
            elif isinstance(inner, ast.Import):
                found.update(a.name for a in inner.names if a.name.startswith("prefect_ds"))
    return found & set(MODULES)


def test_no_module_imports_in_a_circle() -> None:
    graph = {
        module: _module_level_imports(
            SRC.joinpath(*module.split(".")[1:]).with_suffix(".py")
            if SRC.joinpath(*module.split(".")[1:]).with_suffix(".py").exists()
            else SRC.joinpath(*module.split(".")[1:], "__init__.py"))
        for module in MODULES
    }
    done: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        assert module not in path, " -> ".join((*path, module))
        if module in done:
            return
        for imported in graph[module] - {module}:
            visit(imported, (*path, module))
        done.add(module)

    for module in MODULES:
        visit(module, ())
    assert len(done) == len(MODULES) > 30


def test_the_whole_package_imports_in_a_fresh_interpreter() -> None:
    names = [m for m in MODULES if m != "prefect_ds.formats.hdf"]
    done = subprocess.run([sys.executable, "-c", "; ".join(f"import {m}" for m in names)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


def test_purged_result_is_a_deprecated_alias_of_released_result() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        alias = prefect_ds.PurgedResult
    assert alias is prefect_ds.ReleasedResult
    assert any(issubclass(w.category, DeprecationWarning) and "ReleasedResult" in str(w.message)
               for w in caught)
    with pytest.raises(AttributeError):
        _ = prefect_ds.NoSuchName  # type: ignore[attr-defined]


def test_every_format_capability_is_a_runtime_protocol_that_file_format_implements() -> None:
    protocols = [getattr(prefect_ds, n) for n in prefect_ds.__all__ if n.startswith("Supports")]
    assert len(protocols) >= 5
    fmt = prefect_ds.get_format("parquet")
    for protocol in protocols:
        assert isinstance(fmt, protocol), protocol.__name__
