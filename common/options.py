"""Option dataclasses: each field carries its own help and role, a stage's options nest one
small options object per step, and every option keeps one flat name (its flag and its key in
the recorded JSON), so nesting changes neither the flags nor the files."""

from __future__ import annotations

import dataclasses
import enum
import typing
from collections.abc import Callable
from typing import Any, TypeVar

Options = TypeVar("Options")


class Role(enum.Enum):
    """What an option decides, declared on the option itself; every list of options by kind
    (a cache's identity, a sweep's axes, what a resumed run must match) is derived from it.

    IDENTITY
        Decides the numbers: hashed into a cache's identity, matched when a sweep resumes a
        run, shown among a run's changed options. The default, so that an option declared
        without thought counts rather than being silently ignored.
    PLACE
        Where inputs are read and outputs written (``cache``, ``out``).
    RUN
        How a run goes, never its numbers: workers, batches, backend, what it prints,
        whether it replaces an earlier result.
    EXTRA
        Output beside the results that any run may also write (TensorBoard logs).
    """

    IDENTITY = "identity"
    PLACE = "place"
    RUN = "run"
    EXTRA = "extra"


def option(
    default: Any,
    help: str,
    *,
    metavar: str | None = None,
    flag: str | None = None,
    parse: Callable[[str], Any] | None = None,
    role: Role = Role.IDENTITY,
    legacy: tuple = (),
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
    role : Role
        What the option decides (see ``Role``).
    legacy : tuple
        Values with which an IDENTITY option gives the numbers of the time before it
        existed: with one of them it is left out of ``identity``, so results made before
        it keep their identity. Give the new option's default here when it reproduces the
        old numbers.
    """
    metadata = {"help": help, "metavar": metavar, "flag": flag, "parse": parse, "role": role, "legacy": legacy}
    return dataclasses.field(default=default, metadata=metadata)


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


def roles(options_class: type) -> dict[str, Role]:
    """Every option's role by its flat name, steps opened, in field order (IDENTITY where
    a field declares none)."""
    return {name: field.metadata.get("role", Role.IDENTITY) for name, (field, _) in leaf_fields(options_class).items()}


def named(options_class: type, *wanted: Role) -> list[str]:
    """The flat names of the options of ``options_class`` with one of the ``wanted`` roles, in field order."""
    return [name for name, role in roles(options_class).items() if role in wanted]


def identity(options: Any) -> dict[str, Any]:
    """``{flat name: value}`` of the options that decide the numbers, leaving out an option
    at one of its ``legacy`` values (it gives the numbers of the time before it existed)."""
    deciding = named(type(options), Role.IDENTITY)
    legacy = {name: field.metadata.get("legacy", ()) for name, (field, _) in leaf_fields(type(options)).items()}
    return {name: value for name, value in flatten(options).items() if name in deciding and value not in legacy[name]}


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
