"""The cache index: which shard holds which videos, and each shard's digest.

The index (``index.json``) is rewritten atomically after every shard, so a reader
can check ids and row counts against it and a crash never leaves it half written.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import h5py

from cache.errors import CacheError
from cache.schema import CONFIG_FILE, FAILURES_FILE, INDEX_FILE, TEMPORARY_SUFFIX


def file_digest(path: Path) -> str:
    """SHA-256 hex digest of a file's bytes."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def config_hash(config: dict) -> str:
    """Short stable hash of a JSON-able config (key order does not matter)."""
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def write_atomically(path: Path, text: str) -> None:
    """Write text to a temporary sibling, fsync, then rename over ``path``.

    On any failure (a full disk, a read-only folder) ``path`` keeps its old content
    and the temporary file is removed.
    """
    temporary = path.with_name(f".{path.name}.{os.getpid()}{TEMPORARY_SUFFIX}")
    try:
        with open(temporary, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)  # already renamed when all went well


@dataclass
class ShardEntry:
    """What the index knows about one shard."""

    name: str
    sha256: str
    size: int
    video_ids: list[str]
    splits: list[str]
    content_hashes: list[str]


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
        columns = {name: [value.decode() for value in shard[name][()]] for name in ("video_id", "split", "content_hash")}
    return ShardEntry(path.name, file_digest(path), path.stat().st_size, columns["video_id"], columns["split"], columns["content_hash"])


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
        payload = {"shards": [entry.__dict__ for entry in self.shards]}
        write_atomically(Path(cache_dir) / INDEX_FILE, json.dumps(payload, indent=1))

    def live_masks(self) -> list[list[bool]]:
        """Per shard, which rows are current: a re-extracted video_id supersedes
        its older rows (shards are never rewritten), so the latest record wins."""
        latest = {}
        for shard_number, entry in enumerate(self.shards):
            for row, video_id in enumerate(entry.video_ids):
                latest[video_id] = (shard_number, row)
        return [[latest[video_id] == (shard_number, row) for row, video_id in enumerate(entry.video_ids)] for shard_number, entry in enumerate(self.shards)]

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
