"""Check a cache folder against its index, and remove what is damaged."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import h5py

from cache.errors import CacheError
from cache.manifest import Index, file_digest
from cache.schema import SHARD_PATTERN
from cache.writer import TEMPORARY_SUFFIX


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


def verify(cache_dir: Path) -> list[Problem]:
    """Every problem found: missing, resized, altered or unreadable shards, shards
    the index does not name, and temporary files left by a killed run."""
    cache_dir = Path(cache_dir)
    index = Index.load(cache_dir)
    problems = []
    for entry in index.shards:
        path = cache_dir / entry.name
        if not path.exists():
            problems.append(Problem(path, "missing"))
        elif path.stat().st_size != entry.size:
            problems.append(Problem(path, f"size {path.stat().st_size} bytes, index says {entry.size} (truncated or replaced)"))
        elif file_digest(path) != entry.sha256:
            problems.append(Problem(path, "content differs from its recorded SHA-256 (damaged)"))
        else:
            try:
                _read_everything(path)
            except OSError as error:
                problems.append(Problem(path, f"unreadable: {error}"))
    indexed = {entry.name for entry in index.shards}
    problems += [Problem(path, "not in the index (left by an interrupted run)") for path in sorted(cache_dir.glob(SHARD_PATTERN)) if path.name not in indexed]
    problems += [Problem(path, "temporary file left by an interrupted run") for path in sorted(cache_dir.glob(f"*{TEMPORARY_SUFFIX}"))]
    return problems


def repair(cache_dir: Path, problems: list[Problem]) -> int:
    """Delete damaged and stray files and drop their shards from the index, so
    that the next extraction redoes exactly their videos. Returns videos dropped."""
    cache_dir = Path(cache_dir)
    index = Index.load(cache_dir)
    damaged = {problem.path.name for problem in problems}
    kept = [entry for entry in index.shards if entry.name not in damaged]
    dropped = sum(len(entry.video_ids) for entry in index.shards if entry.name in damaged)
    for problem in problems:
        if problem.path.exists():
            try:
                problem.path.unlink()
            except OSError as error:
                raise CacheError(f"{problem.path}: cannot remove ({error})") from error
    index.shards = kept
    index.save(cache_dir)
    return dropped
