"""Size limits for src/ganvae: files of at most MAX_FILE_LINES, functions of at most MAX_FUNCTION_LINES.

The allowlists can only shrink: an entry may not grow past its recorded size, and an entry that
no longer exists or is back within the limit must be removed.  Run
``python tests/test_size_limits.py`` to print today's offenders in the allowlist format.
"""

from __future__ import annotations

import ast
from pathlib import Path

MAX_FILE_LINES = 450
MAX_FUNCTION_LINES = 80

# "ganvae/path.py::Qual.name": max_lines  (methods as Class.method, nested functions as outer.inner)
ALLOWED_LONG_FUNCTIONS: dict[str, int] = {}
# "ganvae/path.py": max_lines
ALLOWED_LONG_FILES: dict[str, int] = {}

SRC = Path(__file__).resolve().parents[1] / "src"
PKG = SRC / "ganvae"


def source_files() -> dict[str, Path]:
    return {p.relative_to(SRC).as_posix(): p for p in sorted(PKG.rglob("*.py"))}


def file_lengths() -> dict[str, int]:
    return {rel: len(p.read_text().splitlines()) for rel, p in source_files().items()}


def function_lengths(tree: ast.AST) -> dict[str, int]:
    """``{qualname: lines}`` for every def/async def, including methods and nested functions."""
    out: dict[str, int] = {}

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = prefix + child.name
                if not isinstance(child, ast.ClassDef):
                    length = child.end_lineno - child.lineno + 1
                    out[name] = max(out.get(name, 0), length)  # redefinitions: keep the longest
                visit(child, name + ".")
            else:
                visit(child, prefix)

    visit(tree, "")
    return out


def all_function_lengths() -> dict[str, int]:
    return {f"{rel}::{qual}": n for rel, p in source_files().items()
            for qual, n in function_lengths(ast.parse(p.read_text(), rel)).items()}


def check(sizes: dict[str, int], allowed: dict[str, int], limit: int, what: str) -> list[str]:
    errors = []
    for key, n in sorted(sizes.items()):
        if n > limit and key not in allowed:
            errors.append(f"{key}: {what} is {n} lines (limit {limit}); split it")
        elif key in allowed and n > allowed[key]:
            errors.append(f"{key}: {what} grew to {n} lines (allowlisted at {allowed[key]}); shrink it")
    for key, cap in sorted(allowed.items()):
        if key not in sizes:
            errors.append(f"{key}: allowlisted {what} no longer exists; remove it from the allowlist")
        elif sizes[key] <= limit:
            errors.append(f"{key}: {what} is {sizes[key]} lines, within the limit; remove it from the allowlist")
    return errors


def test_function_lengths_measured():
    tree = ast.parse("class A:\n    def f(self):\n        def g():\n            pass\n        return g\n")
    assert function_lengths(tree) == {"A.f": 4, "A.f.g": 2}
    assert len(all_function_lengths()) > 50


def test_file_sizes():
    errors = check(file_lengths(), ALLOWED_LONG_FILES, MAX_FILE_LINES, "file")
    assert not errors, "\n".join(errors)


def test_function_sizes():
    errors = check(all_function_lengths(), ALLOWED_LONG_FUNCTIONS, MAX_FUNCTION_LINES, "function")
    assert not errors, "\n".join(errors)


if __name__ == "__main__":
    print("ALLOWED_LONG_FUNCTIONS = {")
    for key, n in sorted(all_function_lengths().items()):
        if n > MAX_FUNCTION_LINES:
            print(f"    {key!r}: {n},")
    print("}")
    print("ALLOWED_LONG_FILES = {")
    for key, n in sorted(file_lengths().items()):
        if n > MAX_FILE_LINES:
            print(f"    {key!r}: {n},")
    print("}")
