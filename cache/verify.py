"""Check a cache folder against its index, and remove what is damaged."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import h5py

from cache.errors import CacheError
from cache.manifest import Index, file_digest, shard_entry, shard_file_problem
from cache.schema import INDEX_FILE, TEMPORARY_SUFFIX
from cache.writer import CacheLock, shard_files


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a cache: the file and what is wrong with it."""

    path: Path
    reason: str


def _read_everything(path: Path) -> None:
    # Reading every chunk makes HDF5 check each Fletcher-32 checksum.
    with h5py.File(path, "r") as shard:
        for name in shard:
            shard[name][()]


def _content_problem(path: Path, sha256: str) -> str | None:
    if file_digest(path) != sha256:
        return "damaged (content differs from its recorded SHA-256)"
    try:
        _read_everything(path)
    except OSError as error:
        return f"damaged ({error})"
    return None


def verify(cache_dir: Path) -> list[Problem]:
    """Every problem found: an unreadable or missing index; missing, resized, altered
    or unreadable shards; shards the index does not name; and temporary files left
    by a killed run."""
    cache_dir = Path(cache_dir)
    temporaries = [Problem(path, "temporary file left by an interrupted run") for path in sorted(cache_dir.glob(f"*{TEMPORARY_SUFFIX}"))]
    index_path = cache_dir / INDEX_FILE
    try:
        index = Index.load(cache_dir)
    except CacheError as error:
        return [Problem(index_path, f"unreadable ({error.__cause__}); --repair rebuilds it from the shards that read in full"), *temporaries]
    if not index_path.exists() and shard_files(cache_dir):
        return [Problem(index_path, "missing; --repair rebuilds it from the shards that read in full"), *temporaries]
    problems = []
    for entry in index.shards:
        path = cache_dir / entry.name
        reason = shard_file_problem(path, entry) or _content_problem(path, entry.sha256)
        if reason:
            problems.append(Problem(path, reason))
    indexed = {entry.name for entry in index.shards}
    problems += [Problem(path, "not in the index (left by an interrupted run); --repair adopts it if it reads in full") for path in shard_files(cache_dir) if path.name not in indexed]
    return problems + temporaries


def repair(cache_dir: Path, problems: list[Problem]) -> int:
    """Make the index name exactly the shards that read in full, so that the next
    extraction redoes exactly the videos that were lost.

    Damaged and missing shards are deleted and dropped from the index; temporary
    files are deleted; shards the index does not name (all of them when the index
    itself is the problem) are adopted when they read in full and deleted otherwise.
    Holds the writer's lock, so it refuses to run beside an extraction.

    Returns
    -------
    int
        Videos dropped from the index.
    """
    cache_dir = Path(cache_dir)
    names = {problem.path.name for problem in problems}
    with CacheLock(cache_dir):
        index = Index() if INDEX_FILE in names else Index.load(cache_dir)
        damaged = [entry for entry in index.shards if entry.name in names]
        index.shards = [entry for entry in index.shards if entry.name not in names]
        indexed = {entry.name for entry in index.shards}
        try:
            for path in [cache_dir / entry.name for entry in damaged] + [problem.path for problem in problems if problem.path.name.endswith(TEMPORARY_SUFFIX)]:
                path.unlink(missing_ok=True)
            for path in shard_files(cache_dir):
                if path.name not in indexed:
                    _adopt_or_remove(path, index)
            index.save(cache_dir)
        except OSError as error:
            raise CacheError(f"{cache_dir}: cannot repair ({error})") from error
    return sum(len(entry.video_ids) for entry in damaged)


def _adopt_or_remove(path: Path, index: Index) -> None:
    try:
        _read_everything(path)
        index.shards.append(shard_entry(path))
    except (OSError, KeyError):
        path.unlink()
