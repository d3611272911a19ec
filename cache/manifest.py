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

from cache.errors import CacheError
from cache.schema import CONFIG_FILE, FAILURES_FILE, INDEX_FILE

DIGEST_BLOCK = 1 << 20  # bytes read at a time when hashing files


def file_digest(path: Path) -> str:
    """SHA-256 hex digest of a file's bytes."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def config_hash(config: dict) -> str:
    """Short stable hash of a JSON-able config (key order does not matter)."""
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def write_atomically(path: Path, text: str) -> None:
    """Write text to a temporary sibling, fsync, then rename over ``path``."""
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(temporary, "w", encoding="utf-8", newline="") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


@dataclass
class ShardEntry:
    """What the index knows about one shard."""

    name: str
    sha256: str
    size: int
    video_ids: list[str]
    splits: list[str]
    content_hashes: list[str]


@dataclass
class Index:
    """All shards of one cache folder, in the order they were written."""

    shards: list[ShardEntry] = field(default_factory=list)

    @classmethod
    def load(cls, cache_dir: Path) -> Index:
        path = Path(cache_dir) / INDEX_FILE
        if not path.exists():
            return cls()
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            return cls([ShardEntry(**entry) for entry in raw["shards"]])
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise CacheError(f"{path}: index is unreadable ({error}); run `python -m cache verify {cache_dir} --repair`") from error

    def save(self, cache_dir: Path) -> None:
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
        counts: dict[str, int] = {}
        for entry, row in self.live():
            counts[entry.splits[row]] = counts.get(entry.splits[row], 0) + 1
        return dict(sorted(counts.items()))

    def num_videos(self) -> int:
        return sum(1 for _ in self.live())


def read_config(cache_dir: Path) -> dict | None:
    """The extraction config a cache was built with, or None for a new folder."""
    path = Path(cache_dir) / CONFIG_FILE
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
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
