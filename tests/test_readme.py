"""README.md: every test the Guarantees table names exists, and the option tables are the commands' flags."""

from __future__ import annotations

import ast
import dataclasses
import re
from pathlib import Path

import pytest
import typer

from common.command import with_flags
from common.options import option
from scripts.options_table import generated_tables, options_table, readme_tables, with_tables
from train.config import FitOptions

ROOT = Path(__file__).resolve().parents[1]
NAMED_TEST = re.compile(r"`(tests/[\w/]+\.py)(?:::(\w+))?")


@dataclasses.dataclass(frozen=True)
class WiderFitOptions(FitOptions):
    """The fit options plus one, as a later change would add it."""

    warmup_epochs: int = option(3, "Epochs at a rising learning rate | then Adam's.", metavar="N")


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


def test_the_option_tables_are_generated_from_the_commands_flags():
    written = readme_tables((ROOT / "README.md").read_text(encoding="utf-8"))
    for name, table in generated_tables().items():
        assert written.get(name) == table, f"README.md's {name} option table is not the command's: run `make docs`"


def test_a_new_option_field_reaches_its_table_and_its_readme_check_fails():
    app = typer.Typer()

    @app.command()
    @with_flags(WiderFitOptions)
    def fit(options: WiderFitOptions = None) -> None:
        pass

    table = options_table(typer.main.get_command(app))
    assert "| `--warmup-epochs N` | 3 | Epochs at a rising learning rate \\| then Adam's. |" in table.splitlines()
    assert table != readme_tables((ROOT / "README.md").read_text(encoding="utf-8"))["fit"]


def test_every_table_needs_its_pair_of_markers():
    text = "intro\n<!-- options:fit -->\nold\n<!-- /options:fit -->\nend\n"
    assert (
        with_tables(text, {"fit": "| new |"}) == "intro\n<!-- options:fit -->\n| new |\n\n<!-- /options:fit -->\nend\n"
    )
    with pytest.raises(ValueError, match="options:sweep"):
        with_tables(text, {"sweep": "| new |"})
