"""cache.verify: every kind of damage is named, and --repair leaves a cache that reads."""

from __future__ import annotations

import pytest

from cache.manifest import Index, config_hash, file_digest, shard_entry
from cache.reader import CacheReader
from cache.schema import INDEX_FILE, NUMERIC_DATASETS, STRING_DATASETS
from cache.synthetic import (
    IMAGENET_CONFIG,
    SMALL_CONFIG,
    add_foreign_shard,
    flip_embedding_byte,
    random_record,
    write_random_cache,
)
from cache.verify import Problem, Repaired, repair, verify
from cache.writer import TEMPORARY_SUFFIX, CacheWriter, shard_name
from common.errors import CacheError

VIDEOS = 9
PER_SHARD = 3  # three shards: damage one, keep two


@pytest.fixture
def cache_dir(tmp_path):
    return write_random_cache(tmp_path / "cache", range(VIDEOS), videos_per_shard=PER_SHARD)


def flip_a_byte_in_the_middle(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x40
    path.write_bytes(bytes(data))


def truncate(path):
    path.write_bytes(path.read_bytes()[:-1000])


def delete(path):
    path.unlink()


DAMAGE = {
    "flipped byte": (flip_a_byte_in_the_middle, "damaged"),
    "flipped byte in a checksummed chunk": (flip_embedding_byte, "damaged"),
    "truncated": (truncate, "truncated"),
    "deleted": (delete, "missing"),
}


def read_everything(cache_dir) -> list[str]:
    """Read every dataset of every split; return the video ids."""
    reader = CacheReader(cache_dir)
    return sorted(
        video_id
        for split in reader.splits()
        for video_id in reader.read(split, (*STRING_DATASETS, *NUMERIC_DATASETS))["video_id"]
    )


def test_an_intact_cache_has_no_problems(cache_dir):
    assert verify(cache_dir) == []


@pytest.mark.parametrize("kind", DAMAGE)
def test_damage_is_named_and_repaired(cache_dir, kind):
    damage, words = DAMAGE[kind]
    path = cache_dir / shard_name(1)
    damage(path)
    problems = verify(cache_dir)
    assert [problem.path for problem in problems] == [path]
    assert words in problems[0].reason
    with pytest.raises(CacheError) as refused:  # what the trainer gets
        read_everything(cache_dir)
    assert (
        str(refused.value).startswith(f"{path}: ") and words in str(refused.value) and "--repair" in str(refused.value)
    )
    if "damaged" not in words:  # judged by size alone: the very same words
        assert problems[0].reason in str(refused.value)

    assert repair(cache_dir, problems) == Repaired(PER_SHARD, ())
    assert verify(cache_dir) == []
    assert not path.exists()
    lost = {random_record(number).video_id for number in range(PER_SHARD, 2 * PER_SHARD)}
    assert read_everything(cache_dir) == sorted({random_record(number).video_id for number in range(VIDEOS)} - lost)
    with CacheWriter(cache_dir, SMALL_CONFIG, videos_per_shard=PER_SHARD) as writer:  # what `make features` does next
        missing = [
            number for number in range(VIDEOS) if random_record(number).content_hash not in writer.known_hashes()
        ]
        assert missing == list(range(PER_SHARD, 2 * PER_SHARD))
        for number in missing:
            writer.add(random_record(number))
    assert read_everything(cache_dir) == sorted(random_record(number).video_id for number in range(VIDEOS))
    assert verify(cache_dir) == []


def test_stray_temporaries_are_named_and_removed(cache_dir, temporaries):
    strays = [cache_dir / (shard_name(3) + TEMPORARY_SUFFIX), cache_dir / f".{INDEX_FILE}.4242{TEMPORARY_SUFFIX}"]
    for stray in strays:
        stray.write_bytes(b"half")
    problems = verify(cache_dir)
    assert sorted(problem.path for problem in problems) == sorted(strays)
    assert all("temporary" in problem.reason for problem in problems)
    assert repair(cache_dir, problems) == Repaired(0, ())
    assert verify(cache_dir) == [] and temporaries(cache_dir) == []
    assert len(read_everything(cache_dir)) == VIDEOS


def test_an_orphan_is_adopted_if_it_reads_and_removed_if_not(cache_dir):
    index = Index.load(cache_dir)
    orphan = index.shards.pop()
    index.save(cache_dir)
    junk = cache_dir / shard_name(5)
    junk.write_bytes(b"not hdf5")
    problems = verify(cache_dir)
    assert [problem.path.name for problem in problems] == [orphan.name, junk.name]
    assert all("not in the index" in problem.reason for problem in problems)
    assert repair(cache_dir, problems) == Repaired(0, ())
    assert Index.load(cache_dir).shards[-1] == orphan and not junk.exists()
    assert verify(cache_dir) == [] and len(read_everything(cache_dir)) == VIDEOS


@pytest.mark.parametrize("index_damage", ["garbage", "deleted"])
def test_a_lost_index_is_rebuilt_from_the_shards_in_write_order(cache_dir, index_damage):
    with CacheWriter(cache_dir, SMALL_CONFIG, videos_per_shard=PER_SHARD) as writer:
        writer.add(random_record(4, version=1))  # supersedes the row in shard 1
    expected = Index.load(cache_dir)
    flip_embedding_byte(cache_dir / shard_name(2))  # no digest to compare with: the checksum must catch it
    if index_damage == "garbage":
        (cache_dir / INDEX_FILE).write_text('{"shards": [')
    else:
        (cache_dir / INDEX_FILE).unlink()
    problems = verify(cache_dir)
    assert [problem.path.name for problem in problems] == [INDEX_FILE]
    repair(cache_dir, problems)
    assert verify(cache_dir) == []
    rebuilt = Index.load(cache_dir)
    assert [entry.name for entry in rebuilt.shards] == [shard_name(0), shard_name(1), shard_name(3)]
    assert rebuilt.shards == [entry for entry in expected.shards if entry.name != shard_name(2)]
    assert CacheReader(cache_dir).record(random_record(4, version=1).content_hash).video_id == random_record(4).video_id


@pytest.mark.parametrize("indexed", [False, True], ids=["copied in", "adopted by an older version"])
def test_a_foreign_shard_is_named_and_moved_aside_then_its_videos_re_extracted(cache_dir, tmp_path, indexed):
    foreign = add_foreign_shard(cache_dir, [VIDEOS, VIDEOS + 1], tmp_path)
    digest = file_digest(foreign)
    if indexed:  # what the writer did before it checked config hashes
        index = Index.load(cache_dir)
        index.shards.append(shard_entry(foreign))
        index.save(cache_dir)
    problems = verify(cache_dir)
    assert [problem.path for problem in problems] == [foreign]
    reason = problems[0].reason
    assert (
        f"foreign shard: built with config {config_hash(IMAGENET_CONFIG)}, weights='imagenet'; this cache's config is {config_hash(SMALL_CONFIG)}, weights='none'"
        in reason
    )
    assert reason.endswith(f"--repair moves it to {cache_dir / 'foreign'}/")
    assert reason.startswith("not in the index, and ") != indexed

    moved_to = cache_dir / "foreign" / foreign.name
    assert repair(cache_dir, problems) == Repaired(2 if indexed else 0, (moved_to,))
    assert not foreign.exists() and file_digest(moved_to) == digest  # moved, byte for byte: someone's data
    assert verify(cache_dir) == []
    assert read_everything(cache_dir) == sorted(random_record(number).video_id for number in range(VIDEOS))
    with CacheWriter(cache_dir, SMALL_CONFIG, videos_per_shard=PER_SHARD) as writer:  # what `make features` does next
        missing = [
            number for number in range(VIDEOS + 2) if random_record(number).content_hash not in writer.known_hashes()
        ]
        assert missing == [VIDEOS, VIDEOS + 1]
        for number in missing:
            writer.add(random_record(number))
    assert read_everything(cache_dir) == sorted(random_record(number).video_id for number in range(VIDEOS + 2))
    assert verify(cache_dir) == []


def test_repair_never_overwrites_a_shard_already_moved_aside(cache_dir, tmp_path):
    first = add_foreign_shard(cache_dir, [VIDEOS], tmp_path / "first")
    digest = file_digest(first)
    repair(cache_dir, verify(cache_dir))
    second = add_foreign_shard(cache_dir, [VIDEOS + 1], tmp_path / "second")
    assert second.name == first.name
    assert repair(cache_dir, verify(cache_dir)).moved == (cache_dir / "foreign" / f"{first.stem}.1{first.suffix}",)
    assert file_digest(cache_dir / "foreign" / first.name) == digest
    assert verify(cache_dir) == []


def test_a_lost_index_is_rebuilt_without_foreign_shards(cache_dir, tmp_path):
    foreign = add_foreign_shard(cache_dir, [VIDEOS], tmp_path)
    (cache_dir / INDEX_FILE).unlink()
    repaired = repair(cache_dir, verify(cache_dir))
    assert repaired.moved == (cache_dir / "foreign" / foreign.name,)
    assert [entry.name for entry in Index.load(cache_dir).shards] == [shard_name(0), shard_name(1), shard_name(2)]
    assert verify(cache_dir) == [] and len(read_everything(cache_dir)) == VIDEOS


def test_repair_refuses_while_an_extraction_writes(cache_dir):
    (cache_dir / shard_name(0)).unlink()
    problems = verify(cache_dir)
    with CacheWriter(cache_dir, SMALL_CONFIG):
        with pytest.raises(CacheError, match="another process"):
            repair(cache_dir, problems)
    assert Index.load(cache_dir).shards[0].name == shard_name(0)


def test_problem_is_a_frozen_value(tmp_path):
    problem = Problem(tmp_path / "x", "missing")
    assert problem == Problem(tmp_path / "x", "missing")
    with pytest.raises(AttributeError):
        problem.reason = "fine"
