"""Option dataclasses: each field carries its own help, a stage's options nest one small
options object per step, and every option keeps one flat name (its flag and its key in
the recorded JSON), so nesting changes neither the flags nor the files."""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable
from typing import Any, TypeVar

Options = TypeVar("Options")


def option(
    default: Any,
    help: str,
    *,
    metavar: str | None = None,
    flag: str | None = None,
    parse: Callable[[str], Any] | None = None,
) -> Any:
    """A dataclass field that also describes its command-line flag.

    Parameters
    ----------
    default
        The field's default (immutable: option dataclasses are frozen).
    help : str
        One line for ``--help``.
    metavar : str, optional
        Placeholder of the value in ``--help`` (``N``, ``DIR``).
    flag : str, optional
        Click declaration when the derived ``--name`` is not enough, e.g.
        ``--keep-crops/--no-crops``.
    parse : callable, optional
        Turns the flag's text into the field's value, for fields no flag type holds
        (a tuple of seeds written ``1,2,3``); raises ValueError on bad text.
    """
    return dataclasses.field(default=default, metadata={"help": help, "metavar": metavar, "flag": flag, "parse": parse})


def step(options_class: type) -> Any:
    """A field holding a step's own options object, by default that step's defaults."""
    return dataclasses.field(default_factory=options_class)


def _is_options_class(kind: Any) -> bool:
    return isinstance(kind, type) and dataclasses.is_dataclass(kind)


def leaf_fields(options_class: type) -> dict[str, tuple[dataclasses.Field, Any]]:
    """Every option of ``options_class`` by its flat name, steps opened, with its type.

    Raises
    ------
    TypeError
        When two steps use one name: a flat name must say which option it is.
    """
    hints = typing.get_type_hints(options_class)
    leaves: dict[str, tuple[dataclasses.Field, Any]] = {}
    for field in dataclasses.fields(options_class):
        kind = hints[field.name]
        found = leaf_fields(kind) if _is_options_class(kind) else {field.name: (field, kind)}
        for name, leaf in found.items():
            if name in leaves:
                raise TypeError(f"{options_class.__name__}: option {name} is defined twice")
            leaves[name] = leaf
    return leaves


def flatten(options: Any) -> dict[str, Any]:
    """``{flat name: value}`` of every option, steps opened, in field order."""
    values: dict[str, Any] = {}
    for field in dataclasses.fields(options):
        value = getattr(options, field.name)
        if dataclasses.is_dataclass(value):
            values.update(flatten(value))
        else:
            values[field.name] = value
    return values


def build(options_class: type[Options], values: dict[str, Any]) -> Options:
    """Options from flat values (a recorded JSON or a command line); unknown names are ignored
    so that files written by newer versions still load, and missing ones take their defaults."""
    hints = typing.get_type_hints(options_class)
    arguments = {}
    for field in dataclasses.fields(options_class):
        kind = hints[field.name]
        if _is_options_class(kind):
            arguments[field.name] = build(kind, values)
        elif field.name in values:
            arguments[field.name] = values[field.name]
    return options_class(**arguments)


def replace(options: Options, **changes: Any) -> Options:
    """A copy of ``options`` with some options changed by their flat names.

    Raises
    ------
    TypeError
        For a name that is not an option of ``options``.
    """
    unknown = sorted(set(changes) - set(leaf_fields(type(options))))
    if unknown:
        raise TypeError(f"{type(options).__name__} has no option {', '.join(unknown)}")
    return build(type(options), {**flatten(options), **changes})
