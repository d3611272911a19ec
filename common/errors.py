"""The one family of errors traitcache raises, and the exit status each one means.

Every error a user can cause derives from ``TraitcacheError``, which carries its exit
status; ``common.command.reports_errors`` is the one place that turns it into a line on
standard error and that status. Library messages name options by their field name
(``frames must be at least 1``); the command line shows the flag (``--frames``).
"""

from __future__ import annotations

import enum
import os
import re

# Inside an OptionError's problem, `name` mentions another option: the command line shows its flag.
MENTION = re.compile(r"`([a-z][a-z0-9_]*)`")

# The Makefile's recipes set this to the make variable that passes further flags to the
# command they run (EXTRACT_FLAGS, TRAIN_FLAGS): a make user cannot type a flag directly.
MAKE_ENVIRONMENT = "TRAITCACHE_VIA_MAKE"
# Options that have a make variable of their own, by the recipe's flags variable.
MAKE_VARIABLES = {
    "EXTRACT_FLAGS": {"weights": "WEIGHTS", "jobs": "JOBS", "cache": "CACHE", "labels": "LABELS"},
    "TRAIN_FLAGS": {"cache": "CACHE", "head": "HEAD"},
}


class ExitCode(enum.IntEnum):
    """Exit statuses shared by ``python -m extract``, ``python -m train`` and ``python -m cache``."""

    OK = 0
    PARTIAL = 1  # the command ran, and some of its items failed (videos, runs, shards); the rest are done
    USAGE = 2  # nothing was done: a bad option, path, label file, weights, or a locked or mismatched cache
    INTERRUPTED = 130  # Ctrl-C (128 + SIGINT): finished work is kept, the same command resumes


class TraitcacheError(Exception):
    """Base of every error traitcache reports to a user; ``exit_code`` is the status it ends a command with."""

    exit_code: ExitCode = ExitCode.USAGE

    def command_line_message(self) -> str:
        """The message as a command line shows it (options named by their flags)."""
        return str(self)


class OptionError(TraitcacheError, ValueError):
    """An option value that cannot work.

    ``option`` is the field's name and ``problem`` the rest of the sentence, which may
    mention other options as `name` in backquotes, e.g. ``OptionError("out", "holds a
    run; set `overwrite` to replace it")``: the command line shows ``--out holds a run;
    set --overwrite to replace it``.
    """

    def __init__(self, option: str, problem: str):
        super().__init__(f"{option} {problem}")
        self.option = option
        self.problem = problem

    def command_line_problem(self) -> str:
        """The problem alone, other options named by their flags (and, under make, how to set them there)."""
        return command_line_text(self.problem)

    def command_line_message(self) -> str:
        return f"{flag_name(self.option)} {self.command_line_problem()}"


class CacheError(TraitcacheError):
    """A cache folder is missing, damaged, locked or was built with another config."""


class LabelError(TraitcacheError, ValueError):
    """A label file cannot be read or holds values that make no sense."""


def flag_name(option: str) -> str:
    """The command-line flag of an option field: ``frames_per_segment`` -> ``--frames-per-segment``."""
    return "--" + option.replace("_", "-")


def via_make() -> str | None:
    """The make variable that passes further flags when a Makefile recipe runs the command, else None."""
    return os.environ.get(MAKE_ENVIRONMENT) or None


def make_form(option: str) -> str | None:
    """How a make user sets an option: ``WEIGHTS=... for --weights`` or ``TRAIN_FLAGS=--overwrite``;
    None outside make."""
    flags_variable = via_make()
    if flags_variable is None:
        return None
    variable = MAKE_VARIABLES.get(flags_variable, {}).get(option)
    return f"{variable}=... for {flag_name(option)}" if variable else f"{flags_variable}={flag_name(option)}"


def command_line_text(text: str) -> str:
    """``text`` with each `name` mention shown as its flag; under make, a closing note
    says how to set each mentioned option through make's variables."""
    mentioned = dict.fromkeys(MENTION.findall(text))
    shown = MENTION.sub(lambda mention: flag_name(mention.group(1)), text)
    forms = [form for form in map(make_form, mentioned) if form]
    return f"{shown} (through make: {', '.join(forms)})" if forms else shown
