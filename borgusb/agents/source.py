"""BorgUSB's own source, as agents read it: module by module, in dependency order.

Agents learn the system by reading its code, leaves first (a module after everything it imports
from the package), so each file is read with what it builds on already seen. Only modules of the
installed ``borgusb`` package are readable, by dotted name: no path from the model ever reaches the
file system, and every read is a bounded range of lines.
"""

from __future__ import annotations

import ast
import functools
import gc
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent
MAX_LINES = 80


class SourceError(LookupError):
    """No such module in the package (or the range is past its end)."""


@functools.cache
def modules() -> dict[str, Path]:
    """Every module of the package: dotted name -> file."""
    found: dict[str, Path] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        found[".".join(parts)] = path
    return found


def parse(source: bytes) -> ast.Module:
    """`ast.parse` with the cyclic collector paused. On CPython 3.11 the parser's recursion count is
    shared: a finalizer run mid-parse that parses too (a traceback logged by an unclosed aiohttp
    session formats its carets with `ast.parse`) leaves it off, and the outer parse raises
    SystemError "AST constructor recursion depth mismatch" (cpython gh-106905)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        return ast.parse(source)
    finally:
        if enabled:
            gc.enable()


def _imports(name: str, path: Path) -> set[str]:
    """The package's modules that `name` imports (absolute and relative imports)."""
    try:
        tree = parse(path.read_bytes())
    except SyntaxError:
        return set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            out.add(base)
            out.update(f"{base}.{a.name}" for a in node.names)
    known = modules()
    return {m for m in out if m in known and m != name}


@functools.cache
def reading_order() -> tuple[str, ...]:
    """Modules in dependency order: what a module imports comes before it (a depth-first walk in
    name order, so an import cycle, say a package and its submodules, is broken the same way each time)."""
    graph = {name: sorted(_imports(name, path)) for name, path in modules().items()}
    order: list[str] = []
    seen: set[str] = set()
    for root in sorted(graph):
        if root in seen:
            continue
        stack = [(root, iter(graph[root]))]
        seen.add(root)
        while stack:
            name, deps = stack[-1]
            dep = next((d for d in deps if d not in seen), None)
            if dep is None:
                order.append(name)
                stack.pop()
            else:
                seen.add(dep)
                stack.append((dep, iter(graph[dep])))
    return tuple(order)


def read(module: str, start: int = 1, count: int = 40) -> str:
    """Lines start..start+count-1 of a module, numbered, at most `MAX_LINES`."""
    path = modules().get(module)
    if path is None:
        raise SourceError(f"no module {module!r} in borgusb")
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    if start > len(lines):
        raise SourceError(f"{module} has {len(lines)} lines")
    end = min(len(lines), start - 1 + min(count, MAX_LINES))
    return "\n".join(f"{n:5} {lines[n - 1]}" for n in range(start, end + 1))


def next_module(after: str | None) -> str:
    """The module to read after `after` in `reading_order` (the first one to begin, wrapping round)."""
    order = reading_order()
    if after not in order:
        return order[0]
    return order[(order.index(after) + 1) % len(order)]
