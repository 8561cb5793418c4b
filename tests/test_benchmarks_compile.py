"""Every script under benchmarks/ at least compiles (they are not imported by the test suite)."""

from __future__ import annotations

from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def test_benchmarks_compile():
    files = sorted(BENCHMARKS.rglob("*.py"))
    assert files, f"no benchmark scripts found under {BENCHMARKS}"
    errors = []
    for path in files:
        try:
            compile(path.read_text(), str(path), "exec")
        except SyntaxError as e:
            errors.append(f"{path.relative_to(BENCHMARKS.parent)}:{e.lineno}: {e.msg}")
    assert not errors, "benchmark scripts that do not compile:\n" + "\n".join(errors)
