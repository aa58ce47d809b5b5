"""A new backend is one module under ``autotune/backends/`` plus its tests: no other module
names a backend in code (a string such as ``"tvm"``, an import of a backend's module or
runtime). What differs per backend comes from the registry (``autotune.backends``).

Allowed to name backends: ``autotune/backends/`` itself and the conformance suites that
backend tests subclass (``autotune/testing/``).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import autotune
from autotune.backends import backend_names

PACKAGE = Path(autotune.__file__).parent
EXEMPT = ("backends/", "testing/")  # relative to the package


def naming_backends(source: str, names: list[str]) -> list[tuple[int, str]]:
    """(line, what) for each place in ``source`` that names one of the backends ``names``:
    a string literal holding a name as a word (docstrings aside), or an import of a module
    that starts with a name (``tvm``, ``tvm_ffi``, ``autotune.backends.openvino_remote``)."""
    word = re.compile(r"\b(?:" + "|".join(map(re.escape, names)) + r")\b")
    tree = ast.parse(source)
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef,
                                       ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr)
                  and isinstance(node.body[0].value, ast.Constant)}
    found = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Constant) and isinstance(node.value, str)
                and id(node) not in docstrings and word.search(node.value)):
            found.append((node.lineno, f"string {node.value[:60]!r}"))
        modules = []
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            modules = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        for module in modules:
            if module.startswith("autotune."):
                if not module.startswith("autotune.backends."):
                    continue
                first = module.removeprefix("autotune.backends.").split(".")[0]
            else:
                first = module.split(".")[0]
            if any(first == name or first.startswith(f"{name}_") for name in names):
                found.append((node.lineno, f"import of {module}"))
                break  # one finding per import statement
    return found


@pytest.mark.readme_claim("no other module names a backend (tests/test_backend_names.py checks)")
def test_no_module_outside_the_backends_names_a_backend():
    names = backend_names()
    offences = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative.startswith(EXEMPT):
            continue
        offences += [f"autotune/{relative}:{line}: {what}"
                     for line, what in naming_backends(path.read_text(), names)]
    assert not offences, ("backend names outside autotune/backends/ (take them from the "
                          "registry instead):\n" + "\n".join(offences))


def test_the_scan_finds_strings_and_imports_but_not_docstrings():
    source = '''"""Runs on tvm."""
import tvm.relax
from autotune.backends.openvino_remote import measure_on_device
from autotune.backends import get_backend, tvm_layout
from autotune.backends.base import Backend


def f():
    """Also tvm."""
    return get_backend("openvino"), "TVM", "tvmx", "a tvm target"
'''
    found = naming_backends(source, ["openvino", "tvm"])
    assert [line for line, _ in found] == [2, 3, 4, 10, 10]
