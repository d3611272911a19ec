"""Append videos to a cache folder, one complete HDF5 shard at a time.

Only one writer may hold a cache folder (an advisory ``flock`` that the kernel
releases when the process dies, so a killed run never leaves it stuck). Each shard
is written under a temporary name, flushed and renamed, then the index is
rewritten atomically: a crash loses at most the videos still in the buffer.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import h5py
import numpy as np

from cache.lock import CacheLock
from cache.manifest import (
    Index,
    ShardEntry,
    check_cache_folder,
    config_differences,
    config_hash,
    file_digest,
    foreign_advice,
    foreign_problem,
    plural,
    read_config,
    read_shard_attributes,
    shard_entry,
)
from cache.schema import (
    CONFIG_FILE,
    CROPS_DATASET,
    DURATION_DATASET,
    FRAMES_DATASET,
    INDEX_FILE,
    NUMERIC_DATASETS,
    SCHEMA_VERSION,
    SHARD_PATTERN,
    SOUND_OFFSETS,
    SOUND_SAMPLES,
    STRING_DATASETS,
    VideoRecord,
)
from common.errors import CacheError
from common.files import TEMPORARY_SUFFIX, replace_atomically, write_atomically

SHARD_PREFIX, SHARD_SUFFIX = SHARD_PATTERN.split("*")  # shard-00003.h5
DEFAULT_VIDEOS_PER_SHARD = 64  # bounds what a crash can lose and what one shard holds in memory (~100 MB with crops)


def shard_name(number: int) -> str:
    """File name of the shard with this number, e.g. ``shard-00003.h5``."""
    return f"{SHARD_PREFIX}{number:05d}{SHARD_SUFFIX}"


def _shard_digits(name: str) -> str:
    return name.removeprefix(SHARD_PREFIX).removesuffix(SHARD_SUFFIX)


def shard_number(name: str) -> int:
    """Inverse of ``shard_name`` (numbers may outgrow five digits)."""
    return int(_shard_digits(name))


def shard_files(cache_dir: Path) -> list[Path]:
    """The folder's shard files in the order they were written."""
    named = (path for path in Path(cache_dir).glob(SHARD_PATTERN) if _shard_digits(path.name).isdecimal())
    return sorted(named, key=lambda path: shard_number(path.name))


def library_versions() -> dict[str, str]:
    """Versions of the storage libraries (extraction adds its own)."""
    return {"numpy": np.__version__, "h5py": h5py.__version__, "hdf5": h5py.version.hdf5_version}


SOUND_CHUNK = 2**16  # samples per chunk of the flat sound (128 KiB, 4 s at 16 kHz): well below HDF5's 1 MiB
# chunk cache, so a chunk two videos' sounds share is completed in memory, never read back


class _ShardFile(io.RawIOBase):
    """The temporary shard file as HDF5 writes it through h5py's file-object driver.

    HDF5 meeting a failed write keeps the half-written file open inside the library, and
    the process crashes (SIGSEGV) at exit. So HDF5 never sees one: the first OSError is
    kept in ``error``, later writes are discarded, HDF5 closes the file as usual, and
    ``write_shard`` raises the kept error. Writes go straight to the file (``pwrite``),
    so no image of the shard is ever held in memory.
    """

    def __init__(self, descriptor: int):
        super().__init__()
        self.descriptor = descriptor
        self.position = 0
        self.length = 0  # bytes as HDF5 wrote them, discarded writes included
        self.error: OSError | None = None

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        self.position = offset + {os.SEEK_SET: 0, os.SEEK_CUR: self.position, os.SEEK_END: self.length}[whence]
        return self.position

    def tell(self) -> int:
        return self.position

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        # os.pread rather than os.preadv, which some macOS builds of Python lack.
        data = os.pread(self.descriptor, len(buffer), self.position)
        memoryview(buffer).cast("B")[: len(data)] = data
        self.position += len(data)
        return len(data)

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        written = 0
        while self.error is None and written < len(view):
            try:
                written += os.pwrite(self.descriptor, view[written:], self.position + written)
            except OSError as error:
                self.error = error
        self.position += len(view)
        self.length = max(self.length, self.position)
        return len(view)

    def truncate(self, size: int | None = None) -> int:
        self.length = self.position if size is None else size
        if self.error is None:
            try:
                os.ftruncate(self.descriptor, self.length)
            except OSError as error:
                self.error = error
        return self.length

    def flush(self) -> None:
        pass  # every write went straight to the file; write_shard fsyncs it


def _write_sounds(shard: h5py.File, tracks: list[np.ndarray]) -> None:
    """Store the videos' sound tracks flat (SOUND_SAMPLES, SOUND_OFFSETS), each written
    from its own array: no concatenated copy is made."""
    offsets = np.cumsum([0, *(len(track) for track in tracks)], dtype=np.int64)
    total = int(offsets[-1])
    samples = shard.create_dataset(
        SOUND_SAMPLES,
        (total,),
        dtype=np.int16,
        maxshape=(None,),  # only so that a shard of silent videos (no samples) may still be chunked
        chunks=(min(SOUND_CHUNK, max(total, 1)),),
        fletcher32=True,
        track_times=False,
    )
    for track, start, stop in zip(tracks, offsets[:-1], offsets[1:]):
        if stop > start:
            samples[start:stop] = np.asarray(track, dtype=np.int16)
    shard.create_dataset(SOUND_OFFSETS, data=offsets, chunks=offsets.shape, fletcher32=True, track_times=False)


def _write_datasets(shard: h5py.File, records: list[VideoRecord]) -> None:
    string_type = h5py.string_dtype("utf-8")
    for name in STRING_DATASETS:
        values = [getattr(record, name) for record in records]
        shard.create_dataset(name, data=np.array(values, dtype=object), dtype=string_type, track_times=False)
    for name, (_, dtype) in NUMERIC_DATASETS.items():
        data = np.stack([np.asarray(getattr(record, name), dtype=dtype) for record in records])
        shard.create_dataset(name, data=data, chunks=(1, *data.shape[1:]), fletcher32=True, track_times=False)
    # A source is stored when every record has it (records re-recorded from an older
    # shard may lack one): a shard's rows either all have it or none.
    for name in (CROPS_DATASET, FRAMES_DATASET):
        if all(getattr(record, name) is not None for record in records):
            images = np.stack([getattr(record, name) for record in records]).astype(np.uint8, copy=False)
            shard.create_dataset(name, data=images, chunks=(1, *images.shape[1:]), fletcher32=True, track_times=False)
    if all(record.duration is not None for record in records):
        durations = np.array([record.duration for record in records], dtype=np.float32)
        shard.create_dataset(DURATION_DATASET, data=durations, track_times=False)
    if all(record.sound_track is not None for record in records):
        _write_sounds(shard, [record.sound_track for record in records])


def write_shard(path: Path, records: list[VideoRecord], attributes: dict) -> None:
    """Write records to one HDF5 file at ``path`` and fsync it (no renaming: see CacheWriter).

    Numeric datasets are chunked one video per chunk with Fletcher-32 checksums, so
    a flipped byte is caught on read and a reader can fetch single videos; the sound
    tracks are stored flat in fixed-size chunks, also with Fletcher-32.

    Raises
    ------
    OSError
        The first write that failed (a full disk, a file size limit), after HDF5 has
        closed the file (see ``_ShardFile``).
    """
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o666)
    try:
        target = _ShardFile(descriptor)
        try:
            with h5py.File(target, "w") as shard:
                _write_datasets(shard, records)
                for key, value in attributes.items():
                    shard.attrs[key] = value
        except Exception as failure:
            # HDF5 may fail on reading back what was discarded: the write error is the cause.
            if target.error is None:
                raise
            raise target.error from failure
        if target.error is not None:
            raise target.error
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


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

    def __init__(
        self,
        cache_dir: Path,
        config: dict,
        videos_per_shard: int = DEFAULT_VIDEOS_PER_SHARD,
        versions: dict | None = None,
    ):
        self.cache_dir = Path(cache_dir)
        self.config = config
        self.videos_per_shard = videos_per_shard
        self.versions = {**library_versions(), **(versions or {})}
        self.buffer: list[VideoRecord] = []
        self.lock = CacheLock(self.cache_dir)
        self.index = Index()
        self.written = 0

    def __enter__(self) -> CacheWriter:
        check_cache_folder(self.cache_dir)
        try:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            self.lock.__enter__()
        except OSError as error:
            raise CacheError(f"{self.cache_dir}: cannot open the cache for writing ({error})") from error
        try:
            self._prepare()
        except BaseException:
            self.lock.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        # Buffered records are whole videos: keep them when the run stops (Ctrl-C, an
        # error elsewhere), but not after a failed write, which would only fail again.
        try:
            if not isinstance(exc, CacheError):
                self.flush()
        finally:
            self.lock.__exit__(exc_type, exc, traceback)

    def _prepare(self) -> None:
        try:
            self._check_config()
            self.index = Index.load(self.cache_dir)
            self._refuse_foreign_shards()
            self._remove_temporary_files()
            self._adopt_unindexed_shards()
        except OSError as error:
            raise CacheError(
                f"{self.cache_dir}: cannot prepare the cache for writing ({error}); the videos already cached are intact"
            ) from error

    def _check_config(self) -> None:
        existing = read_config(self.cache_dir)
        if existing is None:
            # Without config.json nothing says which features the shards hold: adding
            # to them could mix incompatible features.
            if (self.cache_dir / INDEX_FILE).exists() or shard_files(self.cache_dir):
                raise CacheError(
                    f"{self.cache_dir}: holds shards but no {CONFIG_FILE}, so their extraction config is unknown; restore {CONFIG_FILE} or use a new --cache folder"
                )
            write_atomically(self.cache_dir / CONFIG_FILE, json.dumps(self.config, indent=1, sort_keys=True))
        elif config_hash(existing) != config_hash(self.config) and not self._holds_videos():
            # A run that failed before writing any shard leaves only its config behind:
            # that must not block the next run with corrected options.
            write_atomically(self.cache_dir / CONFIG_FILE, json.dumps(self.config, indent=1, sort_keys=True))
        elif config_hash(existing) != config_hash(self.config):
            differences = "; ".join(config_differences(existing, self.config))
            raise CacheError(
                f"{self.cache_dir}: cache was built with a different extraction config ({differences}); use a new --cache folder or the original options"
            )

    def _holds_videos(self) -> bool:
        return bool(shard_files(self.cache_dir)) or Index.load(self.cache_dir).num_videos() > 0

    def _remove_temporary_files(self) -> None:
        for stale in self.cache_dir.glob(f"*{TEMPORARY_SUFFIX}"):
            stale.unlink()

    def _refuse_foreign_shards(self) -> None:
        # A shard of another config, copied in by hand or indexed by a version that
        # did not check, would have its videos counted as cached and mixed with ours:
        # refuse before anything changes, indexed or not.
        for path in shard_files(self.cache_dir):
            try:
                problem = foreign_problem(read_shard_attributes(path), self.config)
            except OSError:
                continue  # unreadable: an unindexed one is removed below, an indexed one is the reader's damage
            if problem:
                raise CacheError(f"{path}: {problem}; {foreign_advice(self.cache_dir)}")

    def _adopt_unindexed_shards(self) -> None:
        # A run killed between renaming a shard and saving the index leaves a
        # complete shard the index does not name: adopt it rather than redo it.
        indexed = {entry.name for entry in self.index.shards}
        orphans = [path for path in shard_files(self.cache_dir) if path.name not in indexed]
        for path in orphans:
            try:
                self.index.shards.append(shard_entry(path))
            except (OSError, KeyError):
                path.unlink()  # unreadable or not one of ours: its videos, if any, are redone
        if orphans:
            self.index.save(self.cache_dir)

    def known_hashes(self) -> dict[str, tuple[ShardEntry, int]]:
        """Content hash -> (shard, row) of every current video in the cache."""
        return self.index.content_hashes()

    def add(self, record: VideoRecord) -> None:
        """Buffer one video; a full buffer is written as a shard."""
        self.buffer.append(record)
        if len(self.buffer) >= self.videos_per_shard:
            self.flush()

    def flush(self) -> None:
        """Write the buffered records as one new shard (no-op when empty)."""
        if not self.buffer:
            return
        number = 1 + max((shard_number(entry.name) for entry in self.index.shards), default=-1)
        final = self.cache_dir / shard_name(number)
        temporary = final.with_name(final.name + TEMPORARY_SUFFIX)
        attributes = {
            "schema_version": SCHEMA_VERSION,
            "config": json.dumps(self.config, sort_keys=True),
            "config_hash": config_hash(self.config),
            "library_versions": json.dumps(self.versions, sort_keys=True),
        }
        try:
            with replace_atomically(final, temporary) as shard:
                write_shard(shard, self.buffer, attributes)
            entry = ShardEntry(
                name=final.name,
                sha256=file_digest(final),
                size=final.stat().st_size,
                video_ids=[record.video_id for record in self.buffer],
                splits=[record.split for record in self.buffer],
                content_hashes=[record.content_hash for record in self.buffer],
            )
            # A shard renamed but not indexed (the index could not be saved) is
            # adopted the next time the folder is opened for writing.
            Index([*self.index.shards, entry]).save(self.cache_dir)
        except OSError as error:
            raise CacheError(
                f"{final}: cannot write shard ({error}); the cache is intact ({plural(self.index.num_videos(), 'video')} already cached)"
            ) from error
        self.index.shards.append(entry)
        self.written += len(self.buffer)
        self.buffer = []
