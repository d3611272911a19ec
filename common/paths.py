"""Paths a user most likely meant when the one given does not exist (a typo)."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from pathlib import Path

SUGGESTIONS = 3  # close names offered at most: more reads as noise


def close_siblings(path: Path, accept: Callable[[Path], bool] = Path.exists) -> list[Path]:
    """The entries beside ``path`` whose names are close to its name and that ``accept`` takes, closest first.

    Parameters
    ----------
    path : Path
        A path that does not exist.
    accept : callable
        Which siblings are candidates (default: any entry).

    Returns
    -------
    list of Path
        At most SUGGESTIONS paths, each ``path.parent / name``; empty when the parent
        folder is missing or cannot be listed.
    """
    path = Path(path)
    try:
        names = [entry.name for entry in path.parent.iterdir() if accept(entry)]
    except OSError:  # no parent folder, or one we may not list: nothing to suggest
        return []
    return [path.parent / name for name in difflib.get_close_matches(path.name, names, n=SUGGESTIONS)]


def did_you_mean(paths: list[Path]) -> str:
    """``did you mean A or B?`` for suggestions, empty for none."""
    return f"did you mean {' or '.join(str(path) for path in paths)}?" if paths else ""
