"""The packages' dependencies point one way: extract -> cache <- train, and every one of them -> common."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# What each package may import from the project (module level or inside functions).
ALLOWED = {
    "common": {"common"},
    "cache": {"common", "cache"},
    "extract": {"common", "cache", "extract"},
    "train": {"common", "cache", "train", "extract"},  # train.predict runs the extraction on new videos
}
ONLY_PREDICT_USES_EXTRACT = {"train/predict.py"}
# `cache show --frames` decodes the source video with the extraction's own decoder, imported
# only when asked for, so that there is one nearest-frame and rotation logic.
EXCEPTIONS = {"cache/show.py": {"extract"}}


def project_imports(path: Path) -> set[str]:
    """Top-level project packages a module imports, anywhere in its body."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found & set(ALLOWED)


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_a_package_imports_only_what_the_layout_allows(package):
    problems = []
    for path in sorted((ROOT / package).glob("*.py")):
        name = path.relative_to(ROOT).as_posix()
        allowed = ALLOWED[package] - (
            {"extract"} if package == "train" and name not in ONLY_PREDICT_USES_EXTRACT else set()
        )
        allowed = allowed | EXCEPTIONS.get(name, set())
        problems += [f"{name} imports {other}" for other in sorted(project_imports(path) - allowed)]
    assert problems == []
