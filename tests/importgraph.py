"""The package's import graph, walked from the source (every import, at module level or inside a
function): one walker for the tests that check the house's structure (test_api's cycle test,
test_domain_contract's kind boundaries, test_layers)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("deltabench", "deltaedit", "baselines")


def modules(root: Path = ROOT, packages=PACKAGES):
    """``(module name, file)`` of every module of ``packages`` under ``root``."""
    for pkg in packages:
        for f in sorted((root / pkg).rglob("*.py")):
            rel = f.relative_to(root).with_suffix("")
            parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
            yield ".".join(parts), f


def _statements(mod: str, f: Path):
    """``(base module, [imported names], at module level)`` per import statement of ``f``:
    ``import a.b`` is ``("a.b", [], top)``, ``from a import b, c`` is ``("a", ["a.b", "a.c"], top)``."""
    is_pkg = f.name == "__init__.py"
    tree = ast.parse(f.read_text())
    top = {id(n) for n in tree.body}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, [], id(node) in top
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = mod.split(".") if is_pkg else mod.split(".")[:-1]
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            yield base, [f"{base}.{a.name}" for a in node.names], id(node) in top


def imported(mod: str, f: Path):
    """Every module name ``f`` imports (anywhere in it, functions included), ``from a import b``
    as ``a`` and ``a.b``; with each, whether it is at module level (``(name, top)``)."""
    for base, names, top in _statements(mod, f):
        yield base, top
        yield from ((n, top) for n in names)


def graph(root: Path = ROOT, packages=PACKAGES) -> dict[str, set[str]]:
    """Module -> the package modules it imports (anywhere in the file, lazily or not);
    ``from a import b`` is an arrow to ``a.b`` where that is a module, else to ``a``."""
    mods = dict(modules(root, packages))

    def resolve(name):
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    out = {}
    for m, f in mods.items():
        deps = set()
        for base, names, _ in _statements(m, f):
            deps |= {resolve(n) if n in mods else resolve(base) for n in names} if names else {resolve(base)}
        out[m] = {d for d in deps if d and d != m and not m.startswith(d + ".")}  # a parent package is no cycle
    return out
