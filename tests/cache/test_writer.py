"""cache.writer: shards, atomic renames, the folder lock, crashes and write failures."""

from __future__ import annotations

import errno
import json
import random
import shutil
import signal
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

import cache
from cache import lock as lock_module
from cache import writer as writer_module
from cache.manifest import Index, config_hash, file_digest, shard_entry
from cache.reader import CacheReader
from cache.schema import (
    CONFIG_FILE,
    CROPS_DATASET,
    EMBEDDING_DIM,
    INDEX_FILE,
    NUMERIC_DATASETS,
    SCHEMA_VERSION,
    SOUND_DATASET,
    SOUND_OFFSETS,
    SOUND_SAMPLES,
    STRING_DATASETS,
)
from cache.synthetic import (
    IMAGENET_CONFIG,
    SMALL_CONFIG,
    SMALL_CROP,
    SMALL_FRAMES,
    add_foreign_shard,
    random_record,
    sounding_record,
    write_random_cache,
)
from cache.writer import SOUND_CHUNK, TEMPORARY_SUFFIX, CacheWriter, shard_name, shard_number, write_shard
from common.errors import CacheError


def snapshot(cache_dir: Path) -> dict[str, str]:
    """SHA-256 of every file in the folder, by name."""
    return {path.name: file_digest(path) for path in sorted(cache_dir.iterdir()) if path.is_file()}


def but_the_lock(files: dict[str, str]) -> dict[str, str]:
    """A snapshot without the lock file, which names the pid of the last writer."""
    return {name: digest for name, digest in files.items() if name != lock_module.LOCK_FILE}


# --- shards and the index --------------------------------------------------------------


def test_shards_are_bounded_and_indexed(tmp_path, temporaries):
    cache_dir = tmp_path / "cache"
    with CacheWriter(cache_dir, SMALL_CONFIG, videos_per_shard=3, versions={"av": "1.2.3"}) as writer:
        for number in range(7):
            writer.add(random_record(number, split="train" if number % 2 else "test"))
    assert writer.written == 7
    index = Index.load(cache_dir)
    assert [entry.name for entry in index.shards] == [shard_name(0), shard_name(1), shard_name(2)]
    assert [len(entry.video_ids) for entry in index.shards] == [3, 3, 1]
    assert [video_id for entry in index.shards for video_id in entry.video_ids] == [
        random_record(number).video_id for number in range(7)
    ]
    for entry in index.shards:
        path = cache_dir / entry.name
        assert (entry.sha256, entry.size) == (file_digest(path), path.stat().st_size)
        with h5py.File(path, "r") as shard:
            assert [value.decode() for value in shard["video_id"][()]] == entry.video_ids
            assert [value.decode() for value in shard["split"][()]] == entry.splits
            assert set(shard) == {*STRING_DATASETS, *NUMERIC_DATASETS, CROPS_DATASET}
            for name, (_, dtype) in NUMERIC_DATASETS.items():
                assert shard[name].dtype == dtype and shard[name].shape[0] == len(entry.video_ids)
                assert len(shard[name].shape) == 1 or shard[name].fletcher32, name
            assert shard["face_embeddings"].shape[1:] == (SMALL_FRAMES, EMBEDDING_DIM)
            assert (
                shard[CROPS_DATASET].shape[1:] == (SMALL_FRAMES, SMALL_CROP, SMALL_CROP, 3)
                and shard[CROPS_DATASET].dtype == np.uint8
            )
            assert shard.attrs["schema_version"] == SCHEMA_VERSION
            assert json.loads(shard.attrs["config"]) == SMALL_CONFIG and shard.attrs["config_hash"] == config_hash(
                SMALL_CONFIG
            )
            versions = json.loads(shard.attrs["library_versions"])
            assert versions["av"] == "1.2.3" and versions["h5py"] == h5py.__version__
    assert json.loads((cache_dir / CONFIG_FILE).read_text()) == SMALL_CONFIG
    assert temporaries(cache_dir) == []


def test_shards_without_crops(tmp_path):
    write_random_cache(tmp_path, range(3), crops=False)
    with h5py.File(tmp_path / shard_name(0), "r") as shard:
        assert CROPS_DATASET not in shard


def test_sound_tracks_are_stored_flat_in_checksummed_chunks_with_their_offsets(tmp_path):
    lengths = (SOUND_CHUNK + 3, 0, 5, SOUND_CHUNK - 1)  # tracks across chunk boundaries, a video without sound
    records = [sounding_record(number, length) for number, length in enumerate(lengths)]
    with CacheWriter(tmp_path, SMALL_CONFIG, videos_per_shard=len(records)) as writer:
        for record in records:
            writer.add(record)
    with h5py.File(tmp_path / shard_name(0), "r") as shard:
        assert SOUND_DATASET not in shard and shard.attrs["schema_version"] == SCHEMA_VERSION
        samples, offsets = shard[SOUND_SAMPLES], shard[SOUND_OFFSETS]
        assert samples.dtype == np.int16 and samples.shape == (sum(lengths),) and samples.chunks == (SOUND_CHUNK,)
        assert samples.fletcher32 and offsets.fletcher32 and offsets.dtype == np.int64
        assert offsets[()].tolist() == np.cumsum([0, *lengths]).tolist()
        for record, start, stop in zip(records, offsets[:-1], offsets[1:]):
            np.testing.assert_array_equal(samples[start:stop], record.sound_track)


def test_exit_writes_what_is_buffered_even_when_interrupted(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with CacheWriter(tmp_path, SMALL_CONFIG, videos_per_shard=10) as writer:
            writer.add(random_record(0))
            writer.add(random_record(1))
            raise KeyboardInterrupt
    assert Index.load(tmp_path).num_videos() == 2
    writer.flush()  # the buffer was emptied: nothing more to write
    assert len(Index.load(tmp_path).shards) == 1


def test_known_hashes_follow_superseded_content(tmp_path):
    write_random_cache(tmp_path, range(3))
    with CacheWriter(tmp_path, SMALL_CONFIG, videos_per_shard=2) as writer:
        assert set(writer.known_hashes()) == {random_record(number).content_hash for number in range(3)}
        writer.add(random_record(1, version=1))
    with CacheWriter(tmp_path, SMALL_CONFIG) as writer:
        assert set(writer.known_hashes()) == {
            random_record(0).content_hash,
            random_record(1, version=1).content_hash,
            random_record(2).content_hash,
        }
        assert writer.index.num_videos() == 3


def test_shard_numbers_beyond_five_digits_never_overwrite(tmp_path):
    assert [shard_number(shard_name(number)) for number in (0, 7, 99999, 100000, 1234567)] == [
        0,
        7,
        99999,
        100000,
        1234567,
    ]
    write_random_cache(tmp_path, range(4), videos_per_shard=2)
    index = Index.load(tmp_path)
    for entry, new_name in zip(index.shards, (shard_name(10001), shard_name(100000))):
        (tmp_path / entry.name).rename(tmp_path / new_name)
        entry.name = new_name
    index.save(tmp_path)
    before = snapshot(tmp_path)
    write_random_cache(tmp_path, [4], videos_per_shard=2)
    after = snapshot(tmp_path)
    assert all(after[name] == digest for name, digest in before.items() if name.startswith("shard-"))
    assert [entry.name for entry in Index.load(tmp_path).shards] == [
        shard_name(10001),
        shard_name(100000),
        shard_name(100001),
    ]


# --- config ---------------------------------------------------------------------------------


def test_a_different_config_is_refused_naming_the_key(tmp_path):
    write_random_cache(tmp_path, range(2))
    before = snapshot(tmp_path)
    with pytest.raises(CacheError, match=r"frames: 4 -> 8") as caught:
        with CacheWriter(tmp_path, {**SMALL_CONFIG, "frames": 8}):
            pass
    assert str(tmp_path) in str(caught.value)
    assert snapshot(tmp_path) == before
    with CacheWriter(tmp_path, dict(reversed(list(SMALL_CONFIG.items())))):  # same config, other key order
        pass


def test_shards_without_a_config_are_refused(tmp_path):
    write_random_cache(tmp_path, range(2))
    (tmp_path / CONFIG_FILE).unlink()
    with pytest.raises(CacheError, match=CONFIG_FILE):
        with CacheWriter(tmp_path, {**SMALL_CONFIG, "frames": 8}):
            pass
    assert not (tmp_path / CONFIG_FILE).exists()


@pytest.mark.parametrize("indexed", [False, True], ids=["unindexed", "indexed"])
def test_a_foreign_shard_is_refused_on_open_and_nothing_changes(tmp_path, indexed):
    cache_dir = write_random_cache(tmp_path / "none-cache", range(4))
    foreign = add_foreign_shard(cache_dir, [4, 5], tmp_path)
    if indexed:  # what the writer did before it checked config hashes, or an index edited by hand
        index = Index.load(cache_dir)
        index.shards.append(shard_entry(foreign))
        index.save(cache_dir)
    indexed_names = [entry.name for entry in Index.load(cache_dir).shards]
    (cache_dir / shard_name(7)).write_bytes(
        b"not an HDF5 file"
    )  # junk the writer would remove: must stay until the refusal is resolved
    before = snapshot(cache_dir)
    with pytest.raises(CacheError) as caught:
        with CacheWriter(cache_dir, SMALL_CONFIG):
            pass
    message = str(caught.value)
    assert message.startswith(
        f"{foreign}: foreign shard: built with config {config_hash(IMAGENET_CONFIG)}, weights='imagenet'; this cache's config is {config_hash(SMALL_CONFIG)}, weights='none'; "
    )
    assert (
        f"python -m cache verify {cache_dir} --repair" in message
        and f"{cache_dir / 'foreign'}/" in message
        and "\n" not in message
    )
    assert snapshot(cache_dir) == before
    assert [entry.name for entry in Index.load(cache_dir).shards] == indexed_names


def test_a_shard_without_a_config_hash_is_refused(tmp_path):
    cache_dir = write_random_cache(tmp_path, range(2))
    stranger = cache_dir / shard_name(1)
    write_shard(stranger, [random_record(2)], {})  # our layout, but no attributes: its features' origin is unknown
    with pytest.raises(CacheError, match="foreign shard: it has no config hash") as caught:
        with CacheWriter(cache_dir, SMALL_CONFIG):
            pass
    assert str(caught.value).startswith(f"{stranger}: ")
    assert stranger.exists() and Index.load(cache_dir).num_videos() == 2


# --- the folder ---------------------------------------------------------------------------------


def test_a_folder_holding_python_source_is_refused_before_anything_is_written(tmp_path):
    package_copy = tmp_path / "cache"  # the old default --cache: the package's own folder
    shutil.copytree(Path(cache.__file__).parent, package_copy, ignore=shutil.ignore_patterns("__pycache__"))
    before = snapshot(package_copy)
    with pytest.raises(CacheError) as caught:
        with CacheWriter(package_copy, SMALL_CONFIG):
            pass
    message = str(caught.value)
    assert (
        message.startswith(f"{package_copy}: holds Python source (__init__.py, __main__.py, cli.py, ...)")
        and "--cache features/" in message
        and "\n" not in message
    )
    assert snapshot(package_copy) == before
    package = tmp_path / "package"
    package.mkdir()
    (package / "__init__.py").write_text("")
    with pytest.raises(CacheError, match="holds Python source \\(__init__.py\\)"):
        with CacheWriter(package, SMALL_CONFIG):
            pass
    assert sorted(path.name for path in package.iterdir()) == ["__init__.py"]


def test_a_cache_path_that_is_a_file_is_refused(tmp_path):
    path = tmp_path / "features"
    path.write_text("someone's notes")
    with pytest.raises(CacheError) as caught:
        with CacheWriter(path, SMALL_CONFIG):
            pass
    assert str(caught.value) == f"{path} is a file, not a cache folder; give --cache a folder, e.g. features/"
    assert path.read_text() == "someone's notes"


# --- atomicity and crashes ---------------------------------------------------------------------


def test_a_shard_is_written_under_a_temporary_name(tmp_path, monkeypatch, temporaries):
    seen = []
    real_write_shard = writer_module.write_shard

    def observing_write_shard(path, records, attributes):
        seen.append(path)
        assert path.name.endswith(TEMPORARY_SUFFIX)
        assert not path.with_name(path.name.removesuffix(TEMPORARY_SUFFIX)).exists()
        real_write_shard(path, records, attributes)
        assert not path.with_name(path.name.removesuffix(TEMPORARY_SUFFIX)).exists()

    monkeypatch.setattr(writer_module, "write_shard", observing_write_shard)
    write_random_cache(tmp_path, range(3), videos_per_shard=2)
    assert [path.name for path in seen] == [shard_name(0) + TEMPORARY_SUFFIX, shard_name(1) + TEMPORARY_SUFFIX]
    assert temporaries(tmp_path) == []


def test_stale_temporaries_are_removed_on_open(tmp_path, temporaries):
    write_random_cache(tmp_path, range(2))
    before = snapshot(tmp_path)
    for name in (shard_name(1) + TEMPORARY_SUFFIX, f".{INDEX_FILE}.12345{TEMPORARY_SUFFIX}"):
        (tmp_path / name).write_bytes(b"half written")
    with CacheWriter(tmp_path, SMALL_CONFIG) as writer:
        assert temporaries(tmp_path) == []
        assert writer.index.num_videos() == 2
    assert snapshot(tmp_path) == before


def test_an_orphan_shard_is_adopted_and_junk_removed(tmp_path):
    write_random_cache(tmp_path, range(5), videos_per_shard=2)
    index = Index.load(tmp_path)
    orphan = index.shards.pop()
    index.save(tmp_path)
    (tmp_path / shard_name(7)).write_bytes(b"not an HDF5 file")
    with CacheWriter(tmp_path, SMALL_CONFIG, videos_per_shard=2) as writer:
        assert [entry.name for entry in writer.index.shards] == [shard_name(0), shard_name(1), shard_name(2)]
        assert writer.index.shards[-1] == orphan
        assert random_record(4).content_hash in writer.known_hashes()
        writer.add(random_record(5))
    assert not (tmp_path / shard_name(7)).exists()
    assert [entry.name for entry in Index.load(tmp_path).shards][-1] == shard_name(3)


KEEP_WRITING = """
    import sys
    from cache.synthetic import SMALL_CONFIG, random_record
    from cache.writer import CacheWriter
    with CacheWriter(sys.argv[1], SMALL_CONFIG, videos_per_shard=int(sys.argv[2])) as writer:
        first = writer.index.num_videos()
        print("ready", flush=True)
        for number in range(first, first + 100_000):
            writer.add(random_record(number, split=("train", "validation")[number % 2]))
"""
KILL_TRIALS = 6  # runs killed at random moments, each resuming the cache the last one left
LONGEST_RUN = 0.3  # seconds a run may write before it is killed: tens of shards


def check_every_shard_reads(cache_dir: Path) -> list[str]:
    """Read every indexed shard in full; return the ids in index order."""
    reader = CacheReader(cache_dir)
    for split in reader.splits():
        arrays = reader.read(split, (*STRING_DATASETS, *NUMERIC_DATASETS, CROPS_DATASET))
        for video_id, embeddings in zip(arrays["video_id"], arrays["face_embeddings"]):
            number = int(video_id[6:11])
            np.testing.assert_array_equal(embeddings, random_record(number).face_embeddings)
    return [video_id for entry in reader.index.shards for video_id in entry.video_ids]


def test_sigkill_at_random_moments_never_loses_or_exposes_a_shard(tmp_path, children, temporaries):
    rng = random.Random(4)
    cache_dir = tmp_path / "cache"
    previous = 0
    for trial in range(KILL_TRIALS):
        child = children.start(KEEP_WRITING, str(cache_dir), str(rng.choice([1, 4])))
        time.sleep(rng.uniform(0.0, LONGEST_RUN))
        child.kill()
        children.wait(child)
        assert child.returncode == -signal.SIGKILL, f"trial {trial}: the writer ended before it was killed"
        ids = check_every_shard_reads(cache_dir)
        assert ids == [random_record(number).video_id for number in range(len(ids))], f"trial {trial}"
        with CacheWriter(cache_dir, SMALL_CONFIG):  # cleans temporaries, adopts a shard renamed but not indexed
            pass
        ids = check_every_shard_reads(cache_dir)
        assert ids == [random_record(number).video_id for number in range(len(ids))], f"trial {trial}"
        assert len(ids) >= previous and temporaries(cache_dir) == []
        assert sorted(path.name for path in cache_dir.glob("shard-*")) == sorted(
            entry.name for entry in Index.load(cache_dir).shards
        )
        previous = len(ids)
    assert previous > 0, "no trial got as far as one shard: raise LONGEST_RUN"


# --- write failures ---------------------------------------------------------------------------------


def full_disk_after_a_few_bytes(path, records, attributes):
    path.write_bytes(b"\x89HDF partial")
    raise OSError(errno.ENOSPC, "No space left on device", str(path))


def test_a_failed_shard_write_is_a_cache_error_that_leaves_the_cache_intact(tmp_path, monkeypatch):
    write_random_cache(tmp_path, range(4), videos_per_shard=2)
    before = snapshot(tmp_path)
    attempts = []
    monkeypatch.setattr(
        writer_module, "write_shard", lambda *arguments: (attempts.append(1), full_disk_after_a_few_bytes(*arguments))
    )
    with pytest.raises(CacheError, match="No space left on device") as caught:
        with CacheWriter(tmp_path, SMALL_CONFIG, videos_per_shard=2) as writer:
            for number in range(4, 8):
                writer.add(random_record(number))
    message = str(caught.value)
    assert (
        shard_name(2) in message and "the cache is intact (4 videos already cached)" in message and "\n" not in message
    )
    assert len(attempts) == 1, "a failed write must not be retried on exit"
    assert snapshot(tmp_path) == before
    assert check_every_shard_reads(tmp_path) == [random_record(number).video_id for number in range(4)]


def test_a_failed_index_update_keeps_the_old_index_and_adopts_the_shard_later(tmp_path, monkeypatch, temporaries):
    write_random_cache(tmp_path, range(2), videos_per_shard=2)
    index_before = (tmp_path / INDEX_FILE).read_bytes()

    def full_disk(self, cache_dir):
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(Index, "save", full_disk)
        with pytest.raises(CacheError, match="No space"):
            write_random_cache(tmp_path, [2, 3], videos_per_shard=2)
    assert (tmp_path / INDEX_FILE).read_bytes() == index_before
    assert temporaries(tmp_path) == []
    assert CacheReader(tmp_path).splits() == {"train": 2}
    with CacheWriter(tmp_path, SMALL_CONFIG):
        pass
    assert check_every_shard_reads(tmp_path) == [random_record(number).video_id for number in range(4)]


WRITE_PAST_A_SIZE_LIMIT = """
    import resource, signal, sys
    from cache.synthetic import SMALL_CONFIG, random_record
    from common.errors import CacheError
    from cache.writer import CacheWriter
    limit = int(sys.argv[2])
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG from write() instead of dying
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    print("ready", flush=True)
    try:
        with CacheWriter(sys.argv[1], SMALL_CONFIG, videos_per_shard=16) as writer:
            for number in range(100, 116):
                writer.add(random_record(number))
    except CacheError as error:
        print(error, flush=True)
        sys.exit(3)
"""
FILE_SIZE_LIMIT = 64 * 1024  # bytes: above index.json and config.json, below a 16-video shard (~330 KB)


def test_a_real_write_error_from_the_kernel_leaves_the_cache_intact(tmp_path, children, temporaries):
    write_random_cache(tmp_path, range(4), videos_per_shard=2)
    before = snapshot(tmp_path)
    child = children.start(WRITE_PAST_A_SIZE_LIMIT, str(tmp_path), str(FILE_SIZE_LIMIT))
    output, errors = children.finish(child)
    assert child.returncode == 3, errors[-2000:]
    assert shard_name(2) in output and "the cache is intact (4 videos already cached)" in output
    assert but_the_lock(snapshot(tmp_path)) == but_the_lock(before)
    assert temporaries(tmp_path) == []


def test_a_full_disk_leaves_the_cache_intact(tmp_path, temporaries):
    write_random_cache(tmp_path, range(4), videos_per_shard=2)
    before = snapshot(tmp_path)
    with pytest.raises(CacheError) as caught:
        with CacheWriter(tmp_path, SMALL_CONFIG, videos_per_shard=2) as writer:
            # The kernel answers every write to /dev/full with ENOSPC, as it does on a full disk:
            # the shard's temporary name leads there (no mount rights needed).
            (tmp_path / f"{shard_name(2)}{TEMPORARY_SUFFIX}").symlink_to("/dev/full")
            for number in range(4, 6):
                writer.add(random_record(number))
    assert str(caught.value).startswith(
        f"{tmp_path / shard_name(2)}: cannot write shard ([Errno 28] No space left on device"
    )
    assert "the cache is intact (4 videos already cached)" in str(caught.value)
    assert temporaries(tmp_path) == [] and snapshot(tmp_path) == before
    assert check_every_shard_reads(tmp_path) == [random_record(number).video_id for number in range(4)]


WRITE_TO_A_READ_ONLY_FOLDER = """
import sys
from common.errors import CacheError
from cache.synthetic import SMALL_CONFIG, random_record
from cache.writer import CacheWriter
try:
    with CacheWriter(sys.argv[1], SMALL_CONFIG, videos_per_shard=2) as writer:
        for number in range(4, 6):
            writer.add(random_record(number))
except CacheError as error:
    print(error)
"""


def test_a_read_only_folder_leaves_the_cache_intact(tmp_path, temporaries, run_obeying_file_modes):
    cache_dir = write_random_cache(tmp_path / "cache", range(4), videos_per_shard=2)
    before = snapshot(cache_dir)
    cache_dir.chmod(0o555)
    try:
        output = run_obeying_file_modes(WRITE_TO_A_READ_ONLY_FOLDER, str(cache_dir))
    finally:
        cache_dir.chmod(0o755)
    assert output.startswith(f"{cache_dir / shard_name(2)}: cannot write shard ([Errno 13] Permission denied")
    assert "the cache is intact (4 videos already cached)" in output and output.count("\n") == 1
    assert temporaries(cache_dir) == [] and but_the_lock(snapshot(cache_dir)) == but_the_lock(before)
    assert check_every_shard_reads(cache_dir) == [random_record(number).video_id for number in range(4)]
