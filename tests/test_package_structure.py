"""The package's shape: no import cycles (function-level imports included), and one module
using another object's private names only where there is no public way."""

import ast
import re
from pathlib import Path

from tests.helpers import ROOT

PACKAGE = ROOT / "minicnn"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _imports(name: str, path: Path):
    """(module imported, names taken from it) for every import in the file, at any depth."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, ()
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1]
            target = (".".join(base + [node.module] if node.module else base) if node.level
                      else node.module)
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                yield (sub, ()) if sub in MODULES else (target, (alias.name,))


def import_graph() -> dict[str, set[str]]:
    return {name: {m for m, _ in _imports(name, path) if m in MODULES and m != name}
            for name, path in MODULES.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every cycle a depth-first walk meets, as the modules along it."""
    state, stack, found = {}, [], []

    def visit(module):
        state[module] = "open"
        stack.append(module)
        for other in sorted(graph[module]):
            if state.get(other) == "open":
                found.append(stack[stack.index(other):] + [other])
            elif other not in state:
                visit(other)
        stack.pop()
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module)
    return found


def private_uses() -> list[str]:
    """``obj._name`` on anything but self, cls or super(), and ``from m import _name``."""
    uses = []
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Attribute) and node.attr.startswith("_")
                    and not node.attr.startswith("__")
                    and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
                    and not (isinstance(node.value, ast.Call)
                             and getattr(node.value.func, "id", "") == "super")):
                uses.append(f"{name}:{node.lineno} {ast.unparse(node)}")
        for module, names in _imports(name, path):
            uses += [f"{name}: from {module} import {n}" for n in names
                     if n.startswith("_") and not n.startswith("__") and module in MODULES]
    return uses


def test_no_module_imports_itself_round_a_cycle():
    assert cycles(import_graph()) == []


def test_a_cycle_is_found():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]


def test_private_names_stay_private():
    """numba.cuda's device arrays keep their buffer in ``_ary`` (launch.py), the one use
    with no public way; a few more are allowed for what comes."""
    uses = private_uses()
    assert len(uses) <= 15, "\n".join(uses)


# Where the count is another's: Keras' fit, and the CBLAS gemm a C callback must take.
WIDE_BY_CONTRACT = {"minicnn.model.training:fit", "minicnn.backends.numba.blas:gemm"}


def _python_parameters():
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                a = node.args
                names = [p.arg for p in (*a.posonlyargs, *a.args, *a.kwonlyargs)]
                names += [p.arg for p in (a.vararg, a.kwarg) if p is not None]
                yield f"{name}:{node.name}", len([n for n in names if n not in ("self", "cls")])


def _cython_parameters():
    """(function, parameter count) of every def and cdef in the Cython sources: commas at
    the top level of the parentheses (memoryview types hold commas of their own)."""
    for path in sorted((PACKAGE / "backends" / "cython").glob("*.p*")):
        text = path.read_text()
        for match in re.finditer(r"^(?:cdef|cpdef|def)\s+(?:[\w*]+\s+)*?(\w+)\s*\(", text, re.M):
            depth, count, i = 1, 0, match.end()
            empty = text[i] == ")"
            while depth:
                depth += {"(": 1, "[": 1, ")": -1, "]": -1}.get(text[i], 0)
                count += text[i] == "," and depth == 1
                i += 1
            yield f"{path.name}:{match.group(1)}", 0 if empty else count + 1


def test_no_function_takes_more_than_twelve_parameters():
    """Kernels take their geometry, pooling and buffers as small tuples (compiled.py)."""
    wide = [f"{name} ({count})" for name, count in (*_python_parameters(), *_cython_parameters())
            if count > 12 and name not in WIDE_BY_CONTRACT]
    assert not wide, wide
