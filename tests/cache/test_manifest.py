"""cache.manifest: digests, config identity, atomic files, the index and failures."""

from __future__ import annotations

import hashlib
import json

import h5py
import numpy as np
import pytest

from cache.manifest import (
    Index,
    ShardEntry,
    config_differences,
    config_hash,
    file_digest,
    foreign_problem,
    plural,
    read_config,
    read_failures,
    shard_entry,
    shard_file_problem,
    write_failures,
)
from cache.schema import CONFIG_FILE, INDEX_FILE
from common.errors import CacheError


def entry(name: str, video_ids: list[str], splits: list[str] | None = None) -> ShardEntry:
    """An index entry whose content hashes are derived from shard and id (unique per row)."""
    return ShardEntry(
        name=name,
        sha256="0" * 64,
        size=1,
        video_ids=video_ids,
        splits=splits or ["train"] * len(video_ids),
        content_hashes=[f"{name}/{video_id}" for video_id in video_ids],
    )


def test_file_digest_is_sha256_of_the_bytes(tmp_path):
    data = np.random.default_rng(0).bytes(3 << 20)  # several read blocks
    path = tmp_path / "blob"
    path.write_bytes(data)
    assert file_digest(path) == hashlib.sha256(data).hexdigest()


def test_config_hash_ignores_key_order_and_sees_every_value():
    config = {"frames": 10, "crop_size": 224, "weights": "imagenet", "nested": {"a": 1, "b": [1, 2]}}
    reordered = dict(reversed(list(config.items())))
    assert config_hash(config) == config_hash(reordered)
    assert len(config_hash(config)) == 16 and int(config_hash(config), 16) >= 0
    for key in config:
        changed = {**config, key: "something else"}
        assert config_hash(changed) != config_hash(config), key
    assert config_hash({**config, "extra": None}) != config_hash(config)


def test_config_differences_name_each_differing_key():
    old = {"frames": 10, "crop_size": 224, "weights": "imagenet"}
    new = {"frames": 16, "crop_size": 224, "seed": 1}
    lines = config_differences(old, new)
    assert lines == ["frames: 10 -> 16", "seed: None -> 1", "weights: 'imagenet' -> None"]
    assert config_differences(old, dict(old)) == []


def test_index_round_trip_and_missing_index(tmp_path):
    assert Index.load(tmp_path).shards == []
    index = Index([entry("shard-00000.h5", ["a", "b"], ["train", "test"]), entry("shard-00001.h5", ["c"])])
    index.save(tmp_path)
    assert Index.load(tmp_path) == index


@pytest.mark.parametrize("content", [b"{not json", b"\xff\xfe\x00", b"[]", b'{"shards": [{"name": "x"}]}', b"{}"])
def test_unreadable_index_is_a_cache_error_with_advice(tmp_path, content):
    (tmp_path / INDEX_FILE).write_bytes(content)
    with pytest.raises(CacheError, match="index is unreadable") as caught:
        Index.load(tmp_path)
    assert str(tmp_path / INDEX_FILE) in str(caught.value) and "--repair" in str(caught.value)


def test_later_rows_supersede_earlier_rows_of_the_same_video():
    index = Index(
        [
            entry("shard-00000.h5", ["a", "b", "c"], ["train", "train", "test"]),
            entry("shard-00001.h5", ["b", "d"], ["validation", "train"]),
            entry("shard-00002.h5", ["a"], ["train"]),
        ]
    )
    assert index.live_masks() == [[False, False, True], [True, True], [True]]
    live = {(item.name, item.video_ids[row]) for item, row in index.live()}
    assert live == {("shard-00000.h5", "c"), ("shard-00001.h5", "b"), ("shard-00001.h5", "d"), ("shard-00002.h5", "a")}
    assert index.num_videos() == 4
    assert index.split_counts() == {"test": 1, "train": 2, "validation": 1}
    hashes = index.content_hashes()
    assert set(hashes) == {"shard-00000.h5/c", "shard-00001.h5/b", "shard-00001.h5/d", "shard-00002.h5/a"}
    assert all(item.content_hashes[row] == content_hash for content_hash, (item, row) in hashes.items())


def test_read_config(tmp_path):
    assert read_config(tmp_path) is None
    (tmp_path / CONFIG_FILE).write_text(json.dumps({"frames": 4}))
    assert read_config(tmp_path) == {"frames": 4}
    (tmp_path / CONFIG_FILE).write_text("{frames")
    with pytest.raises(CacheError, match="not valid JSON"):
        read_config(tmp_path)


def test_failures_round_trip_awkward_text(tmp_path):
    assert read_failures(tmp_path) == []
    failures = [
        ('videos/a, "quoted" ü.mp4', "cannot decode: invalid data\nfound"),
        ("b.mp4", "fewer than 10 frames (3)"),
    ]
    write_failures(tmp_path, failures)
    assert read_failures(tmp_path) == [{"path": path, "reason": reason} for path, reason in failures]
    write_failures(tmp_path, [])
    assert read_failures(tmp_path) == []


def test_shard_entry_reads_ids_from_the_file(tmp_path):
    path = tmp_path / "shard-00007.h5"
    strings = h5py.string_dtype("utf-8")
    with h5py.File(path, "w") as shard:
        shard["video_id"] = np.array(["é.mp4", "b.mp4"], dtype=object).astype(strings)
        shard["split"] = np.array(["train", "test"], dtype=object).astype(strings)
        shard["content_hash"] = np.array(["h1", "h2"], dtype=object).astype(strings)
    found = shard_entry(path)
    assert (found.name, found.video_ids, found.splits, found.content_hashes) == (
        path.name,
        ["é.mp4", "b.mp4"],
        ["train", "test"],
        ["h1", "h2"],
    )
    assert (found.sha256, found.size) == (file_digest(path), path.stat().st_size)
    with h5py.File(path, "a") as shard:
        del shard["split"]
    with pytest.raises(KeyError):
        shard_entry(path)
    path.write_bytes(b"not hdf5")
    with pytest.raises(OSError):
        shard_entry(path)


def test_shard_file_problem_sees_missing_and_resized_files(tmp_path):
    path = tmp_path / "shard-00000.h5"
    path.write_bytes(b"x" * 10)
    recorded = entry(path.name, ["a"])
    recorded.size = 10
    assert shard_file_problem(path, recorded) is None
    path.write_bytes(b"x" * 4)
    assert "size 4 bytes, index says 10" in shard_file_problem(path, recorded)
    path.unlink()
    assert shard_file_problem(path, recorded) == "missing"


def test_plural_counts():
    assert [plural(count, "shard") for count in (0, 1, 2)] == ["0 shards", "1 shard", "2 shards"]


def test_foreign_problem_names_the_options_that_differ():
    config = {"frames": 4, "weights": "none"}
    assert foreign_problem({"config_hash": config_hash(config), "config": json.dumps(config)}, config) is None
    other = {**config, "weights": "imagenet", "crop_size": 64}
    assert foreign_problem({"config_hash": config_hash(other), "config": json.dumps(other)}, config) == (
        f"foreign shard: built with config {config_hash(other)}, crop_size=64, weights='imagenet'; this cache's config is {config_hash(config)}, crop_size=None, weights='none'"
    )
    assert (
        foreign_problem({"config_hash": "0123456789abcdef", "config": "{not json"}, config)
        == f"foreign shard: built with config 0123456789abcdef; this cache's config is {config_hash(config)}"
    )
    assert foreign_problem({}, config).startswith("foreign shard: it has no config hash")
