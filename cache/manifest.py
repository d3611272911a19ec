"""The cache index: which shard holds which videos, and each shard's digest.

The index (``index.json``) is rewritten atomically after every shard, so a reader
can check ids and row counts against it and a crash never leaves it half written.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import h5py

from cache.schema import CONFIG_FILE, FAILURES_FILE, FOREIGN_FOLDER, INDEX_FILE, LABELS_FILE, SHARD_PATTERN
from common.errors import CacheError
from common.files import write_atomically
from common.paths import close_siblings, did_you_mean


def file_digest(path: Path) -> str:
    """SHA-256 hex digest of a file's bytes."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def config_hash(config: dict) -> str:
    """Short stable hash of a JSON-able config (key order does not matter)."""
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


@dataclass
class ShardEntry:
    """What the index knows about one shard."""

    name: str
    sha256: str
    size: int
    video_ids: list[str]
    splits: list[str]
    content_hashes: list[str]
    # Rows dropped by `cache remove`/`prune`: shards are never rewritten, so the index
    # alone says a record is gone (absent from index.json while empty).
    removed: list[int] = field(default_factory=list)


def shard_entry(path: Path) -> ShardEntry:
    """Index entry of a complete shard file, read from the file itself.

    Raises
    ------
    OSError
        When HDF5 cannot open the file.
    KeyError
        When it lacks the video_id, split or content_hash dataset.
    """
    with h5py.File(path, "r") as shard:
        columns = {
            name: [value.decode() for value in shard[name][()]] for name in ("video_id", "split", "content_hash")
        }
    return ShardEntry(
        path.name,
        file_digest(path),
        path.stat().st_size,
        columns["video_id"],
        columns["split"],
        columns["content_hash"],
    )


def shard_file_problem(path: Path, entry: ShardEntry) -> str | None:
    """What is wrong with a shard file judged by its presence and size alone (cheap:
    nothing is read), or None. Readers and ``verify`` use the same words."""
    if not path.exists():
        return "missing"
    size = path.stat().st_size
    if size != entry.size:
        return f"size {size} bytes, index says {entry.size} (truncated or replaced)"
    return None


def repair_advice(cache_dir: Path) -> str:
    """What a user does about a damaged cache."""
    return f"run `python -m cache verify {cache_dir} --repair`, then `make features` to re-extract the videos it drops"


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    """``1 shard``, ``2 shards``: a count with its noun (``nouns`` where the plural is not noun + s)."""
    return f"{count} {noun}" if count == 1 else f"{count} {nouns or noun + 's'}"


def check_cache_folder(cache_dir: Path) -> None:
    """Refuse a ``--cache`` path that is a file, or a folder holding Python source.

    A code folder (such as the ``cache`` package itself) must never hold a cache:
    the natural reset, deleting the cache folder, would delete the code with it.
    A folder that does not exist yet passes.

    Raises
    ------
    CacheError
        One line naming the path and what to use instead.
    """
    cache_dir = Path(cache_dir)
    if cache_dir.exists() and not cache_dir.is_dir():
        raise CacheError(f"{cache_dir} is a file, not a cache folder; give --cache a folder, e.g. features/")
    sources = sorted(path.name for path in cache_dir.glob("*.py"))
    if sources:
        shown = ", ".join(sources[:3]) + (", ..." if len(sources) > 3 else "")
        raise CacheError(
            f"{cache_dir}: holds Python source ({shown}), so it is a code folder, not a cache (deleting the cache would delete the code); "
            f"use a dedicated folder such as --cache features/ and move any {SHARD_PATTERN}, {INDEX_FILE}, {CONFIG_FILE} and {LABELS_FILE} there"
        )


def check_cache_exists(cache_dir: Path) -> None:
    """Refuse a cache folder that does not exist, naming the caches beside it with a close
    name (a typo), else how to build one.

    Raises
    ------
    CacheError
        One line naming the path.
    """
    cache_dir = Path(cache_dir)
    if cache_dir.is_dir():
        return
    near = close_siblings(cache_dir, accept=lambda entry: (entry / CONFIG_FILE).is_file())
    raise CacheError(f"{cache_dir}: no such cache folder; {did_you_mean(near) or 'build one with `make features`'}")


def foreign_folder(cache_dir: Path) -> Path:
    """Where ``verify --repair`` moves shards built with another config."""
    return Path(cache_dir) / FOREIGN_FOLDER


def foreign_advice(cache_dir: Path) -> str:
    """What a user does about a shard built with another config."""
    return (
        f"run `python -m cache verify {cache_dir} --repair` to move it to {foreign_folder(cache_dir)}/ (nothing is deleted), "
        "then `make features` to extract its videos with this cache's config"
    )


def read_shard_attributes(path: Path) -> dict:
    """A shard's HDF5 attributes (schema version, config, config hash, library versions).

    Raises
    ------
    OSError
        When HDF5 cannot open the file.
    """
    with h5py.File(path, "r") as shard:
        return dict(shard.attrs)


def foreign_problem(attributes: Mapping, cache_config: dict) -> str | None:
    """Why a shard was not built with the cache's extraction config, or None when it was.

    Compares the shard's ``config_hash`` attribute with the hash of ``cache_config``
    and names the options that differ (from its ``config`` attribute).
    """
    expected = config_hash(cache_config)
    found = attributes.get("config_hash")
    if found == expected:
        return None
    if found is None:
        return f"foreign shard: it has no config hash (not written by a traitcache writer), this cache's config is {expected}"
    try:
        shard_config = json.loads(attributes.get("config", "{}"))
    except (TypeError, json.JSONDecodeError):
        shard_config = {}
    keys = (
        sorted(key for key in set(shard_config) | set(cache_config) if shard_config.get(key) != cache_config.get(key))
        if shard_config
        else []
    )
    theirs = "".join(f", {key}={shard_config.get(key)!r}" for key in keys)
    ours = "".join(f", {key}={cache_config.get(key)!r}" for key in keys)
    return f"foreign shard: built with config {found}{theirs}; this cache's config is {expected}{ours}"


@dataclass
class Index:
    """All shards of one cache folder, in the order they were written."""

    shards: list[ShardEntry] = field(default_factory=list)

    @classmethod
    def load(cls, cache_dir: Path) -> Index:
        """The folder's index (empty when it has none); CacheError when unreadable."""
        path = Path(cache_dir) / INDEX_FILE
        if not path.exists():
            return cls()
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            return cls([ShardEntry(**entry) for entry in raw["shards"]])
        except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as error:
            raise CacheError(f"{path}: index is unreadable ({error}); {repair_advice(cache_dir)}") from error

    def save(self, cache_dir: Path) -> None:
        """Replace ``index.json`` atomically."""
        # An empty `removed` is left out, so a cache nothing was removed from keeps the older index format.
        payload = {
            "shards": [
                {key: value for key, value in entry.__dict__.items() if key != "removed" or value}
                for entry in self.shards
            ]
        }
        write_atomically(Path(cache_dir) / INDEX_FILE, json.dumps(payload, indent=1))

    def live_masks(self) -> list[list[bool]]:
        """Per shard, which rows are current: a re-extracted video_id supersedes
        its older rows (shards are never rewritten), so the latest record wins,
        unless that record was removed (then the video has no current row)."""
        latest = {}
        for shard_number, entry in enumerate(self.shards):
            for row, video_id in enumerate(entry.video_ids):
                latest[video_id] = (shard_number, row)
        return [
            [
                latest[video_id] == (shard_number, row) and row not in entry.removed
                for row, video_id in enumerate(entry.video_ids)
            ]
            for shard_number, entry in enumerate(self.shards)
        ]

    def live(self):
        """Yield (entry, row) of every current video."""
        for entry, mask in zip(self.shards, self.live_masks()):
            yield from ((entry, row) for row, alive in enumerate(mask) if alive)

    def content_hashes(self) -> dict[str, tuple[ShardEntry, int]]:
        """Content hash -> (shard entry, row) of every current video."""
        return {entry.content_hashes[row]: (entry, row) for entry, row in self.live()}

    def split_counts(self) -> dict[str, int]:
        """Current videos per split, by split name."""
        counts: dict[str, int] = {}
        for entry, row in self.live():
            counts[entry.splits[row]] = counts.get(entry.splits[row], 0) + 1
        return dict(sorted(counts.items()))

    def num_videos(self) -> int:
        """Current videos (superseded rows not counted)."""
        return sum(1 for _ in self.live())


def read_config(cache_dir: Path) -> dict | None:
    """The extraction config a cache was built with, or None for a new folder."""
    path = Path(cache_dir) / CONFIG_FILE
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CacheError(f"{path}: not valid JSON ({error})") from error


def config_differences(old: dict, new: dict) -> list[str]:
    """Human-readable ``key: old -> new`` lines for every differing key."""
    keys = sorted(set(old) | set(new))
    return [f"{key}: {old.get(key)!r} -> {new.get(key)!r}" for key in keys if old.get(key) != new.get(key)]


def write_failures(cache_dir: Path, failures: list[tuple[str, str]]) -> Path:
    """Record (path, reason) rows of the latest run in ``failures.csv``."""
    path = Path(cache_dir) / FAILURES_FILE
    buffer = io.StringIO()
    csv.writer(buffer).writerows([("path", "reason"), *failures])
    write_atomically(path, buffer.getvalue())
    return path


def read_failures(cache_dir: Path) -> list[dict[str, str]]:
    """Rows of ``failures.csv`` as dicts with keys ``path`` and ``reason``."""
    path = Path(cache_dir) / FAILURES_FILE
    if not path.exists():
        return []
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))
