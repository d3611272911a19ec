"""Files that appear whole or not at all: every stage writes through a temporary sibling and a rename."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

TEMPORARY_SUFFIX = ".tmp"  # what a half-written file is called; a run, `cache verify` and the tests look for it


@contextlib.contextmanager
def replace_atomically(path: Path, temporary: Path | None = None) -> Iterator[Path]:
    """Give a temporary sibling of ``path`` to write; rename it over ``path`` when the block succeeds.

    A reader sees the old file or the new one, never a part. On any failure (an exception,
    a full disk, a read-only folder) ``path`` keeps its old content and the temporary file
    is removed; a SIGKILL leaves at most the temporary, which its name marks as one.

    Parameters
    ----------
    path : Path
    temporary : Path, optional
        The temporary file's name, for a writer whose files others look for by name (the
        cache's shards: ``shard-00003.h5.tmp``); by default ``.NAME.PID.tmp`` beside ``path``,
        hidden and unique to this process.

    Yields
    ------
    Path
        The temporary file to write.
    """
    path = Path(path)
    temporary = temporary or path.with_name(f".{path.name}.{os.getpid()}{TEMPORARY_SUFFIX}")
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)  # already renamed when all went well


def write_atomically(path: Path, text: str) -> None:
    """Write text to ``path`` through :func:`replace_atomically`, flushed to disk before the rename."""
    with replace_atomically(path) as temporary, open(temporary, "w", encoding="utf-8", newline="") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
