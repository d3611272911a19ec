"""cache.report: the summary behind `info` and the CSV behind `export`."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from cache.labels import write_labels
from cache.manifest import config_hash, write_failures
from cache.report import describe, export_csv
from cache.schema import AUDIO_DIM, EMBEDDING_DIM, TRAITS
from cache.synthetic import SMALL_CONFIG, SMALL_FRAMES, random_record
from cache.writer import CacheWriter

FAILURES = [
    ("/data/train/broken.mp4", "cannot decode: invalid data"),
    ("/data/test/short.mp4", "2 frames, fewer than T=4"),
]


def split_of(number: int) -> str:
    return "train" if number < 5 else "test"


@pytest.fixture
def cache_dir(tmp_path):
    """Seven videos (one superseded by newer content), three labelled, two failures."""
    with CacheWriter(tmp_path, SMALL_CONFIG, videos_per_shard=3) as writer:
        for number in range(7):
            writer.add(random_record(number, split=split_of(number)))
        writer.add(random_record(2, split=split_of(2), version=1))
    write_labels(
        tmp_path,
        {
            random_record(0).video_id: {"openness": 0.5},
            random_record(6).video_id: dict.fromkeys(TRAITS, 0.25),
            "not-cached.mp4": {"openness": 0.1},
        },
    )
    write_failures(tmp_path, FAILURES)
    return tmp_path


def current_records():
    return [random_record(number, split=split_of(number), version=int(number == 2)) for number in range(7)]


def test_describe(cache_dir):
    summary = describe(cache_dir)
    assert json.loads(json.dumps(summary)) == summary, "must be JSON-able as it is"
    assert summary["videos"] == 7 and summary["splits"] == {"test": 2, "train": 5}
    assert (summary["frames"], summary["frames_per_segment"]) == (SMALL_FRAMES, 1)
    assert (summary["embedding_dim"], summary["audio_dim"]) == (EMBEDDING_DIM, AUDIO_DIM)
    expected_rate = np.concatenate([record.face_found for record in current_records()]).mean()
    assert summary["face_found_rate"] == pytest.approx(expected_rate)
    assert summary["labelled"] == 2 and summary["shards"] == 3
    assert summary["config"] == SMALL_CONFIG and summary["config_hash"] == config_hash(SMALL_CONFIG)
    assert "h5py" in summary["library_versions"]
    assert summary["failures"] == [{"path": path, "reason": reason} for path, reason in FAILURES]


def test_describe_an_empty_cache(tmp_path):
    with CacheWriter(tmp_path, SMALL_CONFIG):
        pass
    summary = describe(tmp_path)
    assert (summary["videos"], summary["splits"], summary["face_found_rate"], summary["failures"]) == (0, {}, None, [])


def read_csv(path):
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def test_export_csv_one_row_per_current_video(cache_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "videos.csv"
    assert export_csv(cache_dir, out) == 7
    rows = read_csv(out)
    assert list(rows[0]) == ["video_id", "split", *TRAITS, "face_found_rate"]
    by_id = {row["video_id"]: row for row in rows}
    assert len(by_id) == len(rows) == 7
    for record in current_records():
        row = by_id[record.video_id]
        assert row["split"] == record.split
        assert float(row["face_found_rate"]) == pytest.approx(record.face_found.mean(), abs=1e-4)
    assert (
        by_id[random_record(0).video_id]["openness"] == "0.5" and by_id[random_record(0).video_id]["neuroticism"] == ""
    )
    assert all(float(by_id[random_record(6).video_id][trait]) == 0.25 for trait in TRAITS)
    labelled = {random_record(0).video_id, random_record(6).video_id}
    assert all(row[trait] == "" for row in rows if row["video_id"] not in labelled for trait in TRAITS)


def test_export_csv_has_interview_only_when_labels_have_it(cache_dir, tmp_path_factory):
    write_labels(cache_dir, {random_record(1).video_id: {"interview": 0.75}})
    out = tmp_path_factory.mktemp("export") / "videos.csv"
    export_csv(cache_dir, out)
    rows = read_csv(out)
    assert list(rows[0])[-2:] == ["interview", "face_found_rate"]
    assert [row["interview"] for row in rows if row["interview"]] == ["0.75"]
