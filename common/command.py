"""What every command line shares: flags built from option dataclasses, and errors turned
into one line and one exit status."""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable, Iterable
from typing import Any

import click
import typer
from typer.core import TyperCommand

from common.errors import OptionError, TraitcacheError, flag_name
from common.options import build, leaf_fields


def _flag(name: str, field: Any, kind: Any) -> tuple[Any, Any]:
    """The typer annotation and default of one option's flag."""
    metadata = field.metadata
    if "help" not in metadata:
        raise TypeError(f"option {name} has no help: declare it with common.options.option")
    declarations = [metadata["flag"]] if metadata["flag"] else [flag_name(name)]
    parse = metadata["parse"]
    default = field.default
    if parse is not None:
        kind = str
        default = ",".join(map(str, default)) if isinstance(default, tuple) else str(default)
    info = typer.Option(default, *declarations, help=metadata["help"], metavar=metadata["metavar"])
    return kind, info


def with_flags(options_class: type, *, exclude: Iterable[str] = ()) -> Callable:
    """Give a typer command one flag per option of ``options_class``.

    The decorated function declares its own arguments plus ``options``; it receives the
    flags built into one ``options_class`` object. Help, metavar and default come from
    each field's ``common.options.option`` metadata, so an option is defined once. An
    argument the function declares under an option's name (a positional ``members``, a
    required ``--out``) is that option: its value goes into the options object too
    (through the field's ``parse`` when it has one), and the function does not get it.

    Parameters
    ----------
    options_class : type
        A frozen options dataclass (steps nested inside are opened).
    exclude : iterable of str
        Options the command does not offer (they keep their defaults).
    """
    offered = {name: leaf for name, leaf in leaf_fields(options_class).items() if name not in set(exclude)}

    def decorate(command: Callable) -> Callable:
        hints = typing.get_type_hints(command)
        own = [
            parameter.replace(annotation=hints.get(parameter.name, parameter.annotation))
            for parameter in inspect.signature(command).parameters.values()
            if parameter.name != "options"
        ]
        declared = {parameter.name for parameter in own}
        flags = []
        for name, (field, kind) in offered.items():
            if name not in declared:
                annotation, default = _flag(name, field, kind)
                flags.append(
                    inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
                )

        @functools.wraps(command)
        def wrapper(**arguments: Any) -> Any:
            values = {name: arguments.pop(name) for name in offered}
            for name, given in values.items():
                parse = offered[name][0].metadata.get("parse")
                if parse is not None:
                    try:
                        values[name] = parse(given)
                    except ValueError as error:
                        problem = error.command_line_problem() if isinstance(error, OptionError) else str(error)
                        raise typer.BadParameter(problem, param_hint=flag_name(name)) from None
            return command(**arguments, options=build(options_class, values))

        parameters = own + flags
        wrapper.__signature__ = inspect.Signature(parameters)
        wrapper.__annotations__ = {parameter.name: parameter.annotation for parameter in parameters}
        del wrapper.__wrapped__  # typer must see the flags, not the function's own signature
        return wrapper

    return decorate


def reports_errors(command: Callable) -> Callable:
    """Run a command; a TraitcacheError becomes ``error: ...`` on standard error and its exit status."""

    @functools.wraps(command)
    def wrapper(*arguments: Any, **keywords: Any) -> Any:
        try:
            return command(*arguments, **keywords)
        except TraitcacheError as error:
            typer.echo(f"error: {error.command_line_message()}", err=True)
            raise typer.Exit(error.exit_code) from None

    return wrapper


def _argument_name(argument: click.Parameter) -> str:
    """An argument as help shows it: its metavar (``CACHE``, ``VIDEO_ID...``), in brackets when optional."""
    name = argument.metavar or argument.name.upper() + ("..." if argument.nargs != 1 else "")
    return name if argument.required else f"[{name}]"


class PlainHelp(TyperCommand):
    """Plain click help whose arguments read as their metavar alone: ``CACHE VIDEO_ID...``
    instead of typer's ``{CACHE} {VIDEO_ID...}...`` and ``<list[str]>`` type tags.

    Use it as ``@app.command(cls=PlainHelp)`` in a ``typer.Typer(rich_markup_mode=None)``.
    """

    def collect_usage_pieces(self, ctx: click.Context) -> list[str]:
        arguments = [_argument_name(param) for param in self.get_params(ctx) if param.param_type_name == "argument"]
        return [self.options_metavar, *arguments] if self.options_metavar else arguments

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        sections: dict[str, list[tuple[str, str]]] = {"Arguments": [], "Options": []}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            if param.param_type_name == "argument":
                sections["Arguments"].append((_argument_name(param), record[1]))
            else:
                sections["Options"].append(record)
        for title, rows in sections.items():
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)
