"""Check a cache folder against its index; remove what is damaged, move aside what is foreign."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import h5py

from cache.lock import CacheLock, lock_holder
from cache.manifest import (
    Index,
    check_cache_exists,
    check_cache_folder,
    config_hash,
    file_digest,
    foreign_folder,
    foreign_problem,
    read_config,
    read_shard_attributes,
    shard_entry,
    shard_file_problem,
)
from cache.schema import CONFIG_FILE, INDEX_FILE
from cache.sets import DESCRIPTOR_FILE, PART_PREFIX, part_problem, stored_sets
from cache.writer import shard_files
from common.errors import CacheError
from common.files import TEMPORARY_SUFFIX


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a cache: the file and what is wrong with it."""

    path: Path
    reason: str


@dataclass(frozen=True)
class Repaired:
    """What ``repair`` did.

    Attributes
    ----------
    dropped_videos : int
        Videos dropped from the index: the next extraction redoes them.
    moved : tuple of Path
        Where the shards of another config now lie (under ``CACHE/foreign/``).
    """

    dropped_videos: int
    moved: tuple[Path, ...]


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


def _foreign(path: Path, config: dict | None) -> str | None:
    """The foreign-shard problem of an existing file, or None (also when HDF5 cannot
    open it: that is damage, judged elsewhere, or when the cache has no config)."""
    if config is None or not path.exists():
        return None
    try:
        return foreign_problem(read_shard_attributes(path), config)
    except OSError:
        return None


def verify(cache_dir: Path) -> list[Problem]:
    """Every problem found: an unreadable or missing index; missing, resized, altered
    or unreadable shards; shards built with another config than ``config.json``;
    shards the index does not name; and temporary files left by a killed run.

    Raises
    ------
    CacheError
        When ``cache_dir`` is not a cache, a run is writing to it (its own temporary
        and not yet indexed files would read as damage), or ``config.json`` is not
        valid JSON.
    """
    cache_dir = Path(cache_dir)
    check_cache_folder(cache_dir)
    check_cache_exists(cache_dir)
    if not (cache_dir / INDEX_FILE).exists() and not (cache_dir / CONFIG_FILE).exists():
        raise CacheError(f"{cache_dir}: not a cache (no {INDEX_FILE} or {CONFIG_FILE})")
    holder = lock_holder(cache_dir)
    if holder:
        raise CacheError(f"{cache_dir}: a run ({holder}) is writing to this cache; verify it when the run has ended")
    config = read_config(cache_dir)
    moved_to = f"--repair moves it to {foreign_folder(cache_dir)}/"
    temporaries = [
        Problem(path, "temporary file left by an interrupted run")
        for path in sorted(cache_dir.glob(f"*{TEMPORARY_SUFFIX}"))
    ]
    index_path = cache_dir / INDEX_FILE
    try:
        index = Index.load(cache_dir)
    except CacheError as error:
        return [
            Problem(
                index_path, f"unreadable ({error.__cause__}); --repair rebuilds it from the shards that read in full"
            ),
            *temporaries,
        ]
    if not index_path.exists() and shard_files(cache_dir):
        return [Problem(index_path, "missing; --repair rebuilds it from the shards that read in full"), *temporaries]
    problems = []
    for entry in index.shards:
        path = cache_dir / entry.name
        # A foreign file under an indexed name also differs in size or digest: name the cause.
        foreign = _foreign(path, config)
        reason = (
            f"{foreign}; {moved_to}"
            if foreign
            else shard_file_problem(path, entry) or _content_problem(path, entry.sha256)
        )
        if reason:
            problems.append(Problem(path, reason))
    indexed = {entry.name for entry in index.shards}
    for path in shard_files(cache_dir):
        if path.name not in indexed:
            foreign = _foreign(path, config)
            if foreign:
                reason = f"not in the index, and {foreign}; {moved_to}"
            else:
                reason = "not in the index (left by an interrupted run); --repair adopts it if it reads in full"
            problems.append(Problem(path, reason))
    return problems + temporaries + _set_problems(cache_dir, index)


def _set_problems(cache_dir: Path, index: Index) -> list[Problem]:
    """Problems of the feature sets stored beside the shards: an identity that is not the
    hash of the descriptor's options, part files that do not read in full, current videos
    no part file holds, and temporary files."""
    problems = []
    live = index.live_masks()
    for found in stored_sets(cache_dir):
        add = f"`python -m extract add {cache_dir} --features {found.name}` computes them"
        if config_hash(found.descriptor.get("options", {})) != found.identity or not found.folder.name.endswith(
            found.identity
        ):
            problems.append(
                Problem(found.folder / DESCRIPTOR_FILE, f"{found.name}'s identity does not match its options")
            )
        for entry, mask in zip(index.shards, live):
            keys = [(entry.content_hashes[row], entry.video_ids[row]) for row in range(len(mask)) if mask[row]]
            if not keys:
                continue
            path = found.part(entry.name)
            try:
                if path.is_file():
                    _read_everything(path)
            except OSError as error:
                problems.append(Problem(path, f"damaged ({error}); --repair deletes it and {add}"))
                continue
            problem = part_problem(found, entry.name, keys)
            if problem:
                problems.append(Problem(path, f"{problem}; {add}"))
        problems += [
            Problem(path, "temporary file left by an interrupted run")
            for path in sorted(found.folder.glob(f"*{TEMPORARY_SUFFIX}"))
        ]
    return problems


def repair(cache_dir: Path, problems: list[Problem]) -> Repaired:
    """Make the index name exactly the shards that read in full and were built with
    the cache's config, so that the next extraction redoes exactly the videos lost.

    Shards of another config are moved to ``CACHE/foreign/`` (never deleted: they are
    someone's features) and dropped from the index. Damaged and missing shards are
    deleted and dropped from the index; temporary files are deleted; shards the index
    does not name (all of them when the index itself is the problem) are adopted when
    they read in full and deleted otherwise. Holds the writer's lock, so it refuses
    to run beside an extraction.
    """
    cache_dir = Path(cache_dir)
    names = {problem.path.name for problem in problems}
    moved: list[Path] = []
    with CacheLock(cache_dir):
        config = read_config(cache_dir)
        index = Index() if INDEX_FILE in names else Index.load(cache_dir)
        dropped = [entry for entry in index.shards if entry.name in names]
        index.shards = [entry for entry in index.shards if entry.name not in names]
        indexed = {entry.name for entry in index.shards}
        try:
            for path in [cache_dir / entry.name for entry in dropped]:
                if _foreign(path, config):
                    moved.append(_move_aside(path, cache_dir))
                else:
                    path.unlink(missing_ok=True)
            for problem in problems:
                # A damaged part file of a feature set is recomputed by `python -m extract add`.
                damaged_part = problem.path.name.startswith(PART_PREFIX) and problem.reason.startswith("damaged")
                if problem.path.name.endswith(TEMPORARY_SUFFIX) or damaged_part:
                    problem.path.unlink(missing_ok=True)
            for path in shard_files(cache_dir):
                if path.name not in indexed:
                    if _foreign(path, config):
                        moved.append(_move_aside(path, cache_dir))
                    else:
                        _adopt_or_remove(path, index)
            index.save(cache_dir)
        except OSError as error:
            raise CacheError(f"{cache_dir}: cannot repair ({error})") from error
    return Repaired(sum(len(entry.video_ids) for entry in dropped), tuple(moved))


def _move_aside(path: Path, cache_dir: Path) -> Path:
    """Move a foreign shard into ``CACHE/foreign/`` under a name not yet taken there."""
    folder = foreign_folder(cache_dir)
    folder.mkdir(exist_ok=True)
    destination = folder / path.name
    copy = 0
    while destination.exists():  # an earlier repair moved a shard of the same name
        copy += 1
        destination = folder / f"{path.stem}.{copy}{path.suffix}"
    path.rename(destination)
    return destination


def _adopt_or_remove(path: Path, index: Index) -> None:
    try:
        _read_everything(path)
        index.shards.append(shard_entry(path))
    except (OSError, KeyError):
        path.unlink()
