"""cache.reader: what CacheWriter wrote comes back, by split, sorted, labelled; damage is refused."""

from __future__ import annotations

import dataclasses
import json
import random
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

import cache
from cache.labels import attach_labels, write_labels
from cache.manifest import Index, config_hash, shard_entry
from cache.reader import DEFAULT_DATASETS, CacheReader
from cache.schema import (
    CROPS_DATASET,
    DURATION_DATASET,
    LABEL_NAMES,
    NUMERIC_DATASETS,
    SOUND_DATASET,
    SOUND_OFFSETS,
    SOUND_SAMPLES,
    STRING_DATASETS,
)
from cache.synthetic import (
    IMAGENET_CONFIG,
    SMALL_CONFIG,
    SMALL_FRAMES,
    add_foreign_shard,
    flip_chunk_byte,
    flip_embedding_byte,
    random_record,
    sounding_record,
    write_random_cache,
)
from cache.verify import verify
from cache.writer import SOUND_CHUNK, CacheWriter, shard_name
from common.errors import CacheError
from extract.adding import AddOptions, add_sets
from extract.run import extract_to_cache
from extract.smile import smile_features

EVERY_DATASET = (*STRING_DATASETS, *NUMERIC_DATASETS, CROPS_DATASET)
# Written by the extraction of release aad0591 (tiny flags): sound tracks in the variable-length
# layout of schema 1; silent.mp4 has no sound, speaks0.mp4 and speaks1.mp4 about 1 s each at 16 kHz.
VLEN_SOUND_FIXTURE = Path(__file__).parents[1] / "fixtures" / "cache-with-vlen-sound"
SPLITS = ("train", "validation", "test")


def split_of(number: int) -> str:
    return SPLITS[number % len(SPLITS)]


@pytest.fixture
def cache_dir(tmp_path):
    """11 videos over three splits in shards of 3, added in shuffled order."""
    numbers = list(range(11))
    random.Random(0).shuffle(numbers)
    with CacheWriter(tmp_path, SMALL_CONFIG, videos_per_shard=3) as writer:
        for number in numbers:
            writer.add(random_record(number, split=split_of(number)))
    return tmp_path


def assert_same_record(actual, expected):
    for field in dataclasses.fields(expected):
        actual_value, expected_value = getattr(actual, field.name), getattr(expected, field.name)
        if isinstance(expected_value, np.ndarray):
            assert actual_value.dtype == expected_value.dtype and actual_value.shape == expected_value.shape, field.name
            np.testing.assert_array_equal(actual_value, expected_value, err_msg=field.name)
        else:
            assert actual_value == expected_value and type(actual_value) is type(expected_value), field.name


def test_round_trip_by_split_sorted_by_video_id(cache_dir):
    reader = CacheReader(cache_dir)
    assert len(reader.index.shards) == 4
    assert reader.splits() == {
        split: sum(split_of(number) == split for number in range(11)) for split in sorted(SPLITS)
    }
    for split in SPLITS:
        arrays = reader.read(split, EVERY_DATASET)
        expected = [random_record(number, split=split) for number in range(11) if split_of(number) == split]
        assert list(arrays["video_id"]) == sorted(record.video_id for record in expected)
        for name in EVERY_DATASET:
            stacked = np.array([getattr(record, name) for record in expected]) if name not in STRING_DATASETS else None
            if stacked is None:
                assert list(arrays[name]) == [getattr(record, name) for record in expected], name
            else:
                assert arrays[name].dtype == (NUMERIC_DATASETS[name][1] if name in NUMERIC_DATASETS else np.uint8), name
                assert arrays[name].shape == stacked.shape, name
                np.testing.assert_array_equal(arrays[name], stacked, err_msg=name)


def test_crops_are_read_only_when_asked(cache_dir):
    reader = CacheReader(cache_dir)
    arrays = reader.read("train")
    assert set(arrays) == set(DEFAULT_DATASETS) and CROPS_DATASET not in arrays
    assert arrays["face_embeddings"].shape == (4, SMALL_FRAMES, 2048)
    assert reader.read("train", (CROPS_DATASET,))[CROPS_DATASET].shape == (
        4,
        SMALL_FRAMES,
        SMALL_CONFIG["crop_size"],
        SMALL_CONFIG["crop_size"],
        3,
    )


def test_a_cache_without_crops_reads_and_says_so_when_crops_are_asked(tmp_path):
    write_random_cache(tmp_path, range(3), crops=False)
    reader = CacheReader(tmp_path)
    assert reader.read("train")["video_id"].tolist() == [random_record(number).video_id for number in range(3)]
    with pytest.raises(CacheError, match=CROPS_DATASET):
        reader.read("train", (CROPS_DATASET,))
    assert reader.record(random_record(1).content_hash).face_crops is None


def test_record_by_content_hash(cache_dir):
    reader = CacheReader(cache_dir)
    for number in (0, 5, 10):
        expected = random_record(number, split=split_of(number))
        assert_same_record(reader.record(expected.content_hash), expected)
        assert reader.record(expected.content_hash, crops=False).face_crops is None
    with pytest.raises(KeyError, match="no cached video"):
        reader.record("f" * 64)


# --- the sound track, in its flat layout and in the variable-length one of earlier releases -------


def write_sounding_cache(cache_dir: Path, lengths, videos_per_shard: int) -> list:
    records = [sounding_record(number, length) for number, length in enumerate(lengths)]
    with CacheWriter(cache_dir, SMALL_CONFIG, videos_per_shard) as writer:
        for record in records:
            writer.add(record)
    return records


def test_sound_tracks_round_trip_with_videos_without_sound(tmp_path):
    # Shards: tracks across chunk boundaries and an empty one; two of equal length; all empty.
    lengths = (SOUND_CHUNK + 3, 0, 5, SOUND_CHUNK - 1, 7, 7, 0, 0, 0)
    records = write_sounding_cache(tmp_path, lengths, videos_per_shard=3)
    reader = CacheReader(tmp_path)
    tracks = reader.read("train", ("video_id", SOUND_DATASET))[SOUND_DATASET]
    assert tracks.shape == (len(records),)
    for track, record in zip(tracks, records):
        assert track.dtype == np.int16
        np.testing.assert_array_equal(track, record.sound_track)
    for record in records:
        assert_same_record(reader.record(record.content_hash), record)


def test_a_flipped_byte_in_the_sound_track_is_refused_when_read(tmp_path):
    write_sounding_cache(tmp_path, (SOUND_CHUNK + 3, SOUND_CHUNK + 3), videos_per_shard=2)
    path = tmp_path / shard_name(0)
    flip_chunk_byte(path, SOUND_SAMPLES, 1)
    reader = CacheReader(tmp_path)
    assert len(reader.read("train", ("face_embeddings",))["face_embeddings"]) == 2  # other datasets read
    with pytest.raises(CacheError, match="damaged") as caught:
        reader.read("train", (SOUND_DATASET,))
    assert_refusal(caught.value, path)


def test_sound_tracks_of_an_earlier_release_read_and_move_to_the_flat_layout(tmp_path):
    cache_dir = Path(shutil.copytree(VLEN_SOUND_FIXTURE, tmp_path / "cache"))
    with h5py.File(cache_dir / shard_name(0), "r") as shard:
        assert SOUND_OFFSETS not in shard and shard.attrs["schema_version"] == 1
        stored = list(shard[SOUND_DATASET][()])  # as h5py reads the variable-length layout
    reader = CacheReader(cache_dir)
    old = reader.read("train", ("video_id", SOUND_DATASET, "has_audio"))
    assert list(old["video_id"]) == ["silent.mp4", "speaks0.mp4", "speaks1.mp4"]
    assert [len(track) for track in old[SOUND_DATASET]] == [0, 16347, 16347] and old["has_audio"].tolist() == [
        False,
        True,
        True,
    ]
    # A renamed video is re-recorded from its cached record into a new shard, as extraction does.
    entry = reader.index.shards[0]
    with CacheWriter(cache_dir, reader.config) as writer:
        for content_hash, video_id in zip(entry.content_hashes, entry.video_ids):
            writer.add(dataclasses.replace(reader.record(content_hash), video_id=f"copy-{video_id}", split="copy"))
    with h5py.File(cache_dir / shard_name(1), "r") as shard:
        assert SOUND_DATASET not in shard and SOUND_OFFSETS in shard
    reader = CacheReader(cache_dir)
    for split in ("train", "copy"):
        tracks = reader.read(split, (SOUND_DATASET,))[SOUND_DATASET]
        for track, expected in zip(tracks, stored, strict=True):
            assert track.dtype == np.int16
            np.testing.assert_array_equal(track, expected)
    assert verify(cache_dir) == []


def test_an_earlier_release_cache_takes_new_videos_and_an_audio_set_over_both_layouts(
    tmp_path, clip_folder, tiny_options
):
    cache_dir = Path(shutil.copytree(VLEN_SOUND_FIXTURE, tmp_path / "cache"))
    extract_to_cache([f"train={clip_folder / 'train'}"], cache_dir, [], tiny_options, show_progress=False)
    assert verify(cache_dir) == []
    summary = add_sets(cache_dir, AddOptions(features="audio:egemaps"), show_progress=False)
    assert summary.added == {"audio:egemaps": 6}
    names = ("video_id", "audio:egemaps", SOUND_DATASET, DURATION_DATASET, "has_audio")
    values = CacheReader(cache_dir).read("train", names)
    assert sum(len(track) > 0 for track in values[SOUND_DATASET]) == 5  # all but silent.mp4
    for egemaps, track, duration, present in zip(*(values[name] for name in names[1:])):
        expected = smile_features(
            track if present else None, 16000, float(duration), tiny_options.decode.frames, "egemaps"
        )
        np.testing.assert_array_equal(egemaps, expected)
    assert verify(cache_dir) == []


def test_labels_join_by_video_id_with_nan_where_unknown(cache_dir):
    reader = CacheReader(cache_dir)
    ids = reader.read("train")["video_id"]
    assert np.isnan(reader.labels(ids)).all()
    write_labels(
        cache_dir,
        {
            ids[1]: {"openness": 0.25, "interview": 0.75},
            ids[3]: {"neuroticism": 1.0},
            "elsewhere.mp4": {"openness": 0.5},
        },
    )
    labels = reader.labels(ids)
    assert labels.shape == (len(ids), len(LABEL_NAMES)) and labels.dtype == np.float32
    assert labels[1, LABEL_NAMES.index("openness")] == 0.25 and labels[1, LABEL_NAMES.index("interview")] == 0.75
    assert labels[3, LABEL_NAMES.index("neuroticism")] == 1.0
    assert np.isfinite(labels).sum() == 3 and np.isnan(labels[[0, 2]]).all()
    np.testing.assert_array_equal(reader.labels(ids[::-1]), labels[::-1])


def test_a_video_added_again_supersedes_its_older_row(cache_dir):
    with CacheWriter(cache_dir, SMALL_CONFIG, videos_per_shard=3) as writer:
        writer.add(random_record(0, split="validation", version=1))  # changed content, moved split
        writer.add(random_record(4, split="validation", version=1))  # changed content, same split
    reader = CacheReader(cache_dir)
    assert reader.splits() == {"test": 3, "train": 3, "validation": 5}
    validation = reader.read("validation", EVERY_DATASET)
    assert len(set(validation["video_id"])) == len(validation["video_id"]) == 5
    for number in (0, 4):
        row = list(validation["video_id"]).index(random_record(number).video_id)
        newer = random_record(number, split="validation", version=1)
        np.testing.assert_array_equal(validation["face_embeddings"][row], newer.face_embeddings)
        assert validation["content_hash"][row] == newer.content_hash
        assert_same_record(reader.record(newer.content_hash), newer)
    assert random_record(0).video_id not in reader.read("train")["video_id"]
    with pytest.raises(KeyError):
        reader.record(random_record(0).content_hash)


def test_config_and_dimensions(cache_dir):
    reader = CacheReader(cache_dir)
    assert reader.config == SMALL_CONFIG and reader.config_hash == config_hash(SMALL_CONFIG)
    assert (reader.frames, reader.frames_per_segment) == (SMALL_FRAMES, 1)
    attributes = reader.shard_attributes()
    assert json.loads(attributes["config"]) == SMALL_CONFIG and "h5py" in attributes["library_versions"]


def test_an_empty_cache_has_no_splits(tmp_path):
    with CacheWriter(tmp_path, SMALL_CONFIG):
        pass
    reader = CacheReader(tmp_path)
    assert reader.splits() == {} and reader.shard_attributes() == {}
    with pytest.raises(CacheError, match="no split 'train'; splits are none"):
        reader.read("train")


def test_unknown_split_or_dataset(cache_dir):
    reader = CacheReader(cache_dir)
    with pytest.raises(CacheError, match="no split 'dev'; splits are test, train, validation"):
        reader.read("dev")
    with pytest.raises(KeyError, match="face_embedding"):
        reader.read("train", ("face_embedding",))


def test_a_folder_that_is_not_a_cache(tmp_path):
    with pytest.raises(CacheError, match="no such cache folder; build one with `make features`"):
        CacheReader(tmp_path / "missing")
    with pytest.raises(CacheError, match="not a cache"):
        CacheReader(tmp_path)


def test_a_file_or_a_folder_of_python_source_is_refused(cache_dir, tmp_path):
    shard = cache_dir / shard_name(0)
    with pytest.raises(CacheError) as caught:
        CacheReader(shard)
    assert str(caught.value) == f"{shard} is a file, not a cache folder; give --cache a folder, e.g. features/"
    package = Path(cache.__file__).parent  # the old default --cache, read-only here
    with pytest.raises(CacheError) as caught:
        CacheReader(package)
    message = str(caught.value)
    assert (
        message.startswith(f"{package}: holds Python source (__init__.py, ")
        and "--cache features/" in message
        and "\n" not in message
    )
    (cache_dir / "helper.py").write_text("")  # a real cache that someone put code into
    with pytest.raises(CacheError, match="holds Python source \\(helper.py\\)"):
        CacheReader(cache_dir)


# --- damage: the trainer relies on these refusals ------------------------------------------------


def assert_refusal(error: CacheError, path) -> None:
    message = str(error)
    assert str(path) in message and "--repair" in message and "make features" in message and "\n" not in message


def test_a_flipped_byte_is_refused_when_read(cache_dir):
    path = cache_dir / shard_name(1)
    flip_embedding_byte(path)
    reader = CacheReader(cache_dir)  # opening checks sizes only
    damaged_splits = {split for split in Index.load(cache_dir).shards[1].splits}
    for split in damaged_splits:
        with pytest.raises(CacheError, match="damaged") as caught:
            reader.read(split, ("face_embeddings",))
        assert_refusal(caught.value, path)


def test_a_missing_or_truncated_shard_is_refused_on_opening(cache_dir):
    path = cache_dir / shard_name(2)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CacheError, match=f"size {len(data) // 2} bytes, index says {len(data)}") as caught:
        CacheReader(cache_dir)
    assert_refusal(caught.value, path)
    path.unlink()
    with pytest.raises(CacheError, match="missing") as caught:
        CacheReader(cache_dir)
    assert_refusal(caught.value, path)


def test_a_shard_that_is_not_the_indexed_one_is_refused(cache_dir):
    first, second = cache_dir / shard_name(0), cache_dir / shard_name(1)
    first_bytes, second_bytes = first.read_bytes(), second.read_bytes()
    assert len(first_bytes) == len(second_bytes)  # same sizes: only the content tells them apart
    first.write_bytes(second_bytes)
    second.write_bytes(first_bytes)
    reader = CacheReader(cache_dir)
    with pytest.raises(CacheError, match="video_id values differ from the index") as caught:
        for split in reader.splits():
            reader.read(split, ("face_found",))
    assert_refusal(caught.value, caught.value.args[0].split(":")[0])


def test_a_flipped_byte_in_a_string_is_refused_when_read(cache_dir):
    # Variable-length strings live in a heap that Fletcher-32 does not cover:
    # the reader compares them with the index instead.
    entry = Index.load(cache_dir).shards[0]
    path = cache_dir / entry.name
    data = bytearray(path.read_bytes())
    offset = data.find(entry.content_hashes[1].encode())
    assert offset > 0
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))
    reader = CacheReader(cache_dir)
    with pytest.raises(CacheError, match="content_hash values differ from the index") as caught:
        reader.read(entry.splits[1], ("face_found",))
    assert_refusal(caught.value, path)


def test_a_foreign_shard_adopted_by_an_older_version_is_refused_when_read(tmp_path):
    cache_dir = write_random_cache(tmp_path / "none-cache", range(4))
    foreign = add_foreign_shard(cache_dir, [4, 5], tmp_path)
    index = Index.load(cache_dir)
    index.shards.append(shard_entry(foreign))  # what the writer did before it checked config hashes
    index.save(cache_dir)
    reader = CacheReader(cache_dir)  # opening checks sizes only: they match
    assert reader.splits() == {"train": 6}
    for read in (lambda: reader.read("train"), lambda: reader.record(random_record(4).content_hash)):
        with pytest.raises(CacheError) as caught:
            read()
        message = str(caught.value)
        assert message.startswith(
            f"{foreign}: foreign shard: built with config {config_hash(IMAGENET_CONFIG)}, weights='imagenet'; this cache's config is {config_hash(SMALL_CONFIG)}, weights='none'"
        )
        assert f"python -m cache verify {cache_dir} --repair" in message and "\n" not in message
    assert_same_record(
        reader.record(random_record(1).content_hash), random_record(1)
    )  # the cache's own shards still read


def test_a_mistyped_cache_folder_names_the_cache_beside_it(tmp_path):
    features = tmp_path / "features"
    shutil.copytree(VLEN_SOUND_FIXTURE, features)
    (tmp_path / "notes").mkdir()
    expected = f"{tmp_path / 'featuers'}: no such cache folder; did you mean {features}?"
    for command in (CacheReader, verify, lambda path: attach_labels(path, [])):
        with pytest.raises(CacheError) as caught:
            command(tmp_path / "featuers")
        assert str(caught.value) == expected
