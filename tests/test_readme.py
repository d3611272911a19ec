"""README.md: every test the Guarantees table names exists, so no row points at nothing."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NAMED_TEST = re.compile(r"`(tests/[\w/]+\.py)(?:::(\w+))?")


def _guarantee_rows() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    table = text.split("## Guarantees", 1)[1].split("\n## ", 1)[0]
    return [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| guarantee")]


def _test_functions(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")}


def test_every_guarantee_names_tests_that_exist():
    rows = _guarantee_rows()
    assert len(rows) >= 10
    missing = []
    for row in rows:
        named = NAMED_TEST.findall(row)
        assert named, f"a guarantee names no test: {row[:80]}"
        for file, function in named:
            if not (ROOT / file).is_file():
                missing.append(file)
            elif function and function not in _test_functions(ROOT / file):
                missing.append(f"{file}::{function}")
    assert not missing, f"README names tests that do not exist: {missing}"
