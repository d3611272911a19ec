"""The README's option tables, generated from the commands' own flags (``make docs``).

Each table lies in README.md between ``<!-- options:NAME -->`` and ``<!-- /options:NAME -->``,
one row per argument and flag of the command NAME, in ``--help`` order. The flags are the
ones ``common.command.with_flags`` builds from the options dataclasses' fields plus those a
command declares itself (``--cache``, ``--labels``), so a new option reaches its table by
``make docs`` and ``tests/test_readme.py`` fails until it does.

Run ``python -m scripts.options_table`` from the repository root to rewrite the tables.
"""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path

import click
import typer

from common.files import write_atomically

README = Path(__file__).resolve().parents[1] / "README.md"
# Table name -> (module holding the typer app, its sub-command; None for a single-command app).
COMMANDS = {
    "extract": ("extract.cli", None),
    "fit": ("train.cli", "fit"),
    "sweep": ("train.cli", "sweep"),
    "ensemble": ("train.cli", "ensemble"),
}
HEADER = "| option | default | meaning |\n|---|---|---|"


def command(name: str) -> click.Command:
    """The click command behind the table ``name`` (a key of `COMMANDS`), as its command line builds it."""
    module, subcommand = COMMANDS[name]
    built = typer.main.get_command(importlib.import_module(module).app)
    return built.commands[subcommand] if subcommand else built


def _cell(text: str) -> str:
    # A bare | would end the table cell.
    return text.replace("|", "\\|")


def _prose(text: str) -> str:
    # Outside code spans, <name> would be read as an HTML tag and vanish.
    return _cell(text).replace("<", "&lt;")


def _usage(parameter: click.Parameter) -> str:
    if parameter.param_type_name == "argument":
        return f"`{parameter.metavar or parameter.name.upper()}`"
    flags = "/".join(parameter.opts + parameter.secondary_opts)
    return f"`{flags} {parameter.metavar}`" if parameter.metavar and not parameter.is_flag else f"`{flags}`"


def _default(parameter: click.Parameter) -> str:
    if parameter.required:
        return "required"
    value = parameter.default
    if parameter.param_type_name == "option" and parameter.is_flag:
        # A pair of flags shows the one in force; a lone flag is off unless given.
        if parameter.secondary_opts:
            return f"`{(parameter.opts if value else parameter.secondary_opts)[0]}`"
        return "`on`" if value else ""
    if value is None or value == "" or value == [] or value == ():
        return ""
    if isinstance(value, bool | int | float):
        return str(value)
    return f"`{value}`"


def options_table(command: click.Command) -> str:
    """A Markdown table of a command's arguments and flags: usage, default and help, one row each.

    Parameters
    ----------
    command : click.Command
        A built command (`command` gives the README's ones).

    Returns
    -------
    str
        `HEADER` and one row per parameter, in ``--help`` order, without a final newline.
    """
    rows = [
        f"| {_cell(_usage(parameter))} | {_cell(_default(parameter))} | {_prose(parameter.help or '')} |"
        for parameter in command.params
        if not getattr(parameter, "hidden", False)
    ]
    return "\n".join([HEADER, *rows])


def _span(name: str) -> re.Pattern:
    return re.compile(rf"<!-- options:{name} -->\n(?P<table>.*?)<!-- /options:{name} -->", re.DOTALL)


def with_tables(text: str, tables: dict[str, str]) -> str:
    """``text`` with the block between each table's markers replaced by its table.

    Raises
    ------
    ValueError
        When a table's pair of markers is not in ``text`` exactly once.
    """
    for name, table in tables.items():
        span = _span(name)
        if len(span.findall(text)) != 1:
            raise ValueError(
                f"README.md: expected one <!-- options:{name} --> ... <!-- /options:{name} --> pair around the table"
            )
        # The blank line ends the table: Markdown would read the closing marker as one more row.
        block = f"<!-- options:{name} -->\n{table}\n\n<!-- /options:{name} -->"
        text = span.sub(lambda _match, block=block: block, text)  # a function: the table's backslashes stay as they are
    return text


def readme_tables(text: str) -> dict[str, str]:
    """The tables between the markers of `COMMANDS` in ``text``, by name (missing ones left out)."""
    return {name: found["table"].strip("\n") for name in COMMANDS if (found := _span(name).search(text))}


def generated_tables() -> dict[str, str]:
    """Every table of `COMMANDS`, generated from its command."""
    return {name: options_table(command(name)) for name in COMMANDS}


def main() -> int:
    """Rewrite the README's option tables; say which changed."""
    text = README.read_text(encoding="utf-8")
    tables = generated_tables()
    try:
        updated = with_tables(text, tables)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    changed = [name for name, table in tables.items() if readme_tables(text).get(name) != table]
    if updated != text:
        write_atomically(README, updated)
    print(
        f"{README.name}: rewrote the option tables of {', '.join(changed)}"
        if changed
        else f"{README.name}: option tables up to date"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
