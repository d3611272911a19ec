"""Append videos to a cache folder, one complete HDF5 shard at a time.

Only one writer may hold a cache folder (an advisory ``flock`` that the kernel
releases when the process dies, so a killed run never leaves it stuck). Each shard
is written under a temporary name, flushed and renamed, then the index is
rewritten atomically: a crash loses at most the videos still in the buffer.
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

import h5py
import numpy as np

from cache.errors import CacheError
from cache.manifest import (
    Index,
    ShardEntry,
    config_differences,
    config_hash,
    file_digest,
    read_config,
    write_atomically,
)
from cache.schema import (
    CONFIG_FILE,
    CROPS_DATASET,
    NUMERIC_DATASETS,
    SHARD_PATTERN,
    SCHEMA_VERSION,
    STRING_DATASETS,
    VideoRecord,
)

LOCK_FILE = ".lock"
TEMPORARY_SUFFIX = ".tmp"  # shard-00003.h5.tmp until complete
DEFAULT_VIDEOS_PER_SHARD = 64  # ~ one HDF5 chunk row group; bounds what a crash can lose


class CacheLock:
    """Exclusive advisory lock on a cache folder."""

    def __init__(self, cache_dir: Path):
        self.path = Path(cache_dir) / LOCK_FILE
        self.handle = None

    def __enter__(self) -> CacheLock:
        self.handle = open(self.path, "a+", encoding="utf-8")
        try:
            fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.handle.seek(0)
            holder = self.handle.read().strip() or "another process"
            self.handle.close()
            raise CacheError(f"{self.path.parent}: another extraction ({holder}) is writing to this cache; wait for it to finish or stop it") from None
        self.handle.seek(0)
        self.handle.truncate()
        self.handle.write(f"pid {os.getpid()}")
        self.handle.flush()
        return self

    def __exit__(self, *exc_info) -> None:
        fcntl.flock(self.handle, fcntl.LOCK_UN)
        self.handle.close()


def shard_name(number: int) -> str:
    return f"shard-{number:05d}.h5"


def library_versions() -> dict[str, str]:
    """Versions of the storage libraries (extraction adds its own)."""
    return {"numpy": np.__version__, "h5py": h5py.__version__, "hdf5": h5py.version.hdf5_version}


def write_shard(path: Path, records: list[VideoRecord], attributes: dict) -> None:
    """Write records to one HDF5 file at ``path`` (no renaming: see CacheWriter).

    Numeric datasets are chunked one video per chunk with Fletcher-32 checksums, so
    a flipped byte is caught on read and a reader can fetch single videos.
    """
    string_type = h5py.string_dtype("utf-8")
    with h5py.File(path, "w") as shard:
        for name in STRING_DATASETS:
            values = [getattr(record, name) for record in records]
            shard.create_dataset(name, data=np.array(values, dtype=object), dtype=string_type, track_times=False)
        for name, (_, dtype) in NUMERIC_DATASETS.items():
            data = np.stack([np.asarray(getattr(record, name), dtype=dtype) for record in records])
            shard.create_dataset(name, data=data, chunks=(1, *data.shape[1:]), fletcher32=True, track_times=False)
        if records[0].face_crops is not None:
            crops = np.stack([record.face_crops for record in records]).astype(np.uint8, copy=False)
            shard.create_dataset(CROPS_DATASET, data=crops, chunks=(1, *crops.shape[1:]), fletcher32=True, track_times=False)
        for key, value in attributes.items():
            shard.attrs[key] = value


class CacheWriter:
    """Buffer VideoRecords and write them as shards into a cache folder.

    Parameters
    ----------
    cache_dir : Path
        Created if missing.
    config : dict
        The extraction config the features were made with. A folder already built
        with a different config is refused, naming the differences.
    videos_per_shard : int
        Videos per shard file.
    versions : dict, optional
        Library versions to record beside the storage libraries'.
    """

    def __init__(self, cache_dir: Path, config: dict, videos_per_shard: int = DEFAULT_VIDEOS_PER_SHARD, versions: dict | None = None):
        self.cache_dir = Path(cache_dir)
        self.config = config
        self.videos_per_shard = videos_per_shard
        self.versions = {**library_versions(), **(versions or {})}
        self.buffer: list[VideoRecord] = []
        self.lock = CacheLock(self.cache_dir)
        self.index = Index()
        self.written = 0

    def __enter__(self) -> CacheWriter:
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self.lock.__enter__()
        try:
            self._check_config()
            self.index = Index.load(self.cache_dir)
            self._remove_temporary_files()
            self._adopt_unindexed_shards()
        except BaseException:
            self.lock.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        # Buffered records are whole videos: keep them even when the run is stopping.
        try:
            self.flush()
        finally:
            self.lock.__exit__(exc_type, exc, traceback)

    def _check_config(self) -> None:
        existing = read_config(self.cache_dir)
        if existing is None:
            write_atomically(self.cache_dir / CONFIG_FILE, json.dumps(self.config, indent=1, sort_keys=True))
        elif config_hash(existing) != config_hash(self.config):
            differences = "; ".join(config_differences(existing, self.config))
            raise CacheError(f"{self.cache_dir}: cache was built with a different extraction config ({differences}); use a new --cache folder or the original options")

    def _remove_temporary_files(self) -> None:
        for stale in self.cache_dir.glob(f"*{TEMPORARY_SUFFIX}"):
            stale.unlink()

    def _adopt_unindexed_shards(self) -> None:
        # A run killed between renaming a shard and saving the index leaves a
        # complete shard the index does not name: adopt it rather than redo it.
        indexed = {entry.name for entry in self.index.shards}
        orphans = sorted(path for path in self.cache_dir.glob(SHARD_PATTERN) if path.name not in indexed)
        for path in orphans:
            try:
                with h5py.File(path, "r") as shard:
                    columns = {name: [value.decode() for value in shard[name][()]] for name in ("video_id", "split", "content_hash")}
            except (OSError, KeyError):
                path.unlink()
                continue
            self.index.shards.append(ShardEntry(path.name, file_digest(path), path.stat().st_size, columns["video_id"], columns["split"], columns["content_hash"]))
        if orphans:
            self.index.save(self.cache_dir)

    def known_hashes(self) -> dict[str, tuple[ShardEntry, int]]:
        """Content hash -> (shard, row) of every current video in the cache."""
        return self.index.content_hashes()

    def add(self, record: VideoRecord) -> None:
        self.buffer.append(record)
        if len(self.buffer) >= self.videos_per_shard:
            self.flush()

    def flush(self) -> None:
        """Write the buffered records as one new shard (no-op when empty)."""
        if not self.buffer:
            return
        number = 1 + max((int(entry.name[6:11]) for entry in self.index.shards), default=-1)
        final = self.cache_dir / shard_name(number)
        temporary = final.with_name(final.name + TEMPORARY_SUFFIX)
        attributes = {
            "schema_version": SCHEMA_VERSION,
            "config": json.dumps(self.config, sort_keys=True),
            "config_hash": config_hash(self.config),
            "library_versions": json.dumps(self.versions, sort_keys=True),
        }
        try:
            write_shard(temporary, self.buffer, attributes)
            with open(temporary, "rb") as handle:
                os.fsync(handle.fileno())
            os.replace(temporary, final)
        except OSError as error:
            temporary.unlink(missing_ok=True)
            raise CacheError(f"{final}: cannot write shard ({error}); the {self.index.num_videos()} videos already cached are intact") from error
        self.index.shards.append(
            ShardEntry(
                name=final.name,
                sha256=file_digest(final),
                size=final.stat().st_size,
                video_ids=[record.video_id for record in self.buffer],
                splits=[record.split for record in self.buffer],
                content_hashes=[record.content_hash for record in self.buffer],
            )
        )
        self.index.save(self.cache_dir)
        self.written += len(self.buffer)
        self.buffer = []
