"""cache.labels: the safe annotation unpickler, CSV label files, attaching labels."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from cache.labels import (
    attach_labels,
    label_file_warnings,
    label_matrix,
    labelled_count,
    load_annotation_pickle,
    load_label_csv,
    load_label_file,
    merge_tables,
    mismatch_hint,
    read_label_table,
    write_labels,
)
from cache.schema import LABEL_NAMES, LABELS_FILE, TRAITS
from cache.synthetic import random_record, write_random_cache
from common.errors import LabelError

ANNOTATIONS = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "chalearn" / "annotations"
PICKLE_PROTOCOL = 2  # the protocol of the official ChaLearn pickles


@pytest.fixture(scope="module")
def annotation_files() -> list[Path]:
    """The official ChaLearn annotation pickles (skip when the shared fixtures are absent)."""
    files = sorted(ANNOTATIONS.glob("annotation_*.pkl"))
    if not files:
        pytest.skip(f"no ChaLearn annotation pickles under {ANNOTATIONS}")
    return files


class FileCreatingPayload:
    """Unpickling this object runs ``touch`` on a file: the classic pickle attack."""

    def __init__(self, target: Path):
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch '{self.target}'",))


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# --- annotation pickles ---------------------------------------------------------


def test_official_pickles_load_equal_to_plain_pickle(annotation_files):
    for path in annotation_files:
        with open(path, "rb") as handle:
            expected = pickle.load(handle, encoding="latin1")
        table = load_annotation_pickle(path)
        assert set(table) == {video_id for scores in expected.values() for video_id in scores}
        for trait, scores in expected.items():
            for video_id, score in scores.items():
                assert table[video_id][trait] == float(score)
                assert type(table[video_id][trait]) is float


def test_official_pickles_hold_every_label_in_range(annotation_files):
    table = load_annotation_pickle(annotation_files[0])
    assert all(set(scores) == set(LABEL_NAMES) for scores in table.values())
    assert all(0.0 <= value <= 1.0 for scores in table.values() for value in scores.values())


def test_payload_runs_under_plain_pickle_but_not_here(tmp_path):
    plain_target = tmp_path / "created-by-plain-pickle"
    safe_target = tmp_path / "created-by-safe-loader"
    pickle.loads(pickle.dumps({"openness": FileCreatingPayload(plain_target)}, protocol=PICKLE_PROTOCOL))
    assert plain_target.exists(), "the payload should run under plain pickle, else this test proves nothing"

    hostile = tmp_path / "annotation_hostile.pkl"
    hostile.write_bytes(
        pickle.dumps({"openness": {"a.mp4": FileCreatingPayload(safe_target)}}, protocol=PICKLE_PROTOCOL)
    )
    with pytest.raises(LabelError, match="annotation_hostile.pkl") as caught:
        load_annotation_pickle(hostile)
    assert "system" in str(caught.value)
    assert not safe_target.exists()


@pytest.mark.parametrize("score", [np.int64(1), np.complex128(0.5), np.bool_(True)], ids=["int64", "complex", "bool"])
def test_pickle_with_a_non_float_scalar_is_refused(tmp_path, score):
    path = tmp_path / "annotation_ints.pkl"
    # The highest protocol pickles numpy scalars with exactly the globals the loader
    # admits (protocol 2 from Python 3 adds _codecs.encode), so the dtype check is what refuses.
    path.write_bytes(pickle.dumps({"openness": {"a.mp4": score}}, protocol=pickle.HIGHEST_PROTOCOL))
    with pytest.raises(LabelError, match=f"annotation_ints.pkl.*dtype {score.dtype} is not a float"):
        load_annotation_pickle(path)


def test_python3_protocol2_pickle_needs_a_global_beyond_the_allowed_ones(tmp_path):
    path = tmp_path / "annotation_py3.pkl"
    path.write_bytes(pickle.dumps({"openness": {"a.mp4": np.float64(0.5)}}, protocol=PICKLE_PROTOCOL))
    with pytest.raises(LabelError, match="refused global _codecs.encode"):
        load_annotation_pickle(path)


@pytest.mark.parametrize(
    "content, message",
    [
        ({"openness": {"a.mp4": "high"}}, "not a number"),
        ({"openness": {"a.mp4": None}}, "not a number"),
        ({"openness": {"a.mp4": 1.5}}, "outside"),
        ({"openness": {"a.mp4": float("nan")}}, "outside"),
        ({"charisma": {"a.mp4": 0.5}}, "unknown label"),
        ({"openness": [0.5]}, "expected a dict"),
        ([("openness", 0.5)], "expected a dict"),
    ],
)
def test_pickle_with_a_wrong_layout_or_value_is_refused(tmp_path, content, message):
    path = tmp_path / "annotation_odd.pkl"
    path.write_bytes(pickle.dumps(content, protocol=PICKLE_PROTOCOL))
    with pytest.raises(LabelError, match=message) as caught:
        load_annotation_pickle(path)
    assert str(path) in str(caught.value)


def test_truncated_pickle_is_refused(tmp_path):
    path = tmp_path / "annotation_cut.pkl"
    path.write_bytes(pickle.dumps({"openness": {"a.mp4": np.float64(0.5)}}, protocol=PICKLE_PROTOCOL)[:-5])
    with pytest.raises(LabelError, match="annotation_cut.pkl"):
        load_annotation_pickle(path)


def test_numpy_float_scalars_are_accepted(tmp_path):
    path = tmp_path / "annotation_numpy.pkl"
    path.write_bytes(
        pickle.dumps(
            {"openness": {"a.mp4": np.float64(0.25), "b.mp4": np.float32(0.75)}}, protocol=pickle.HIGHEST_PROTOCOL
        )
    )
    assert load_annotation_pickle(path) == {"a.mp4": {"openness": 0.25}, "b.mp4": {"openness": 0.75}}


# --- CSV label files ----------------------------------------------------------------


def test_csv_reads_scores_and_leaves_empty_cells_unknown(tmp_path):
    path = write_csv(tmp_path / "labels.csv", "video_id,openness,neuroticism\na.mp4,0.5,\nb.mp4, 1 ,0\n")
    assert load_label_csv(path) == {"a.mp4": {"openness": 0.5}, "b.mp4": {"openness": 1.0, "neuroticism": 0.0}}


@pytest.mark.parametrize(
    "text, message, line",
    [
        ("name,openness\na.mp4,0.5\n", "no video_id column", None),
        ("video_id,openness,charisma\na.mp4,0.5,0.5\n", "charisma", None),
        ("video_id\na.mp4\n", "no label columns", None),
        ("video_id,openness\na.mp4,0.5\nb.mp4,1.2\n", "outside", 3),
        ("video_id,openness\na.mp4,-0.1\n", "outside", 2),
        ("video_id,openness\na.mp4,nan\n", "outside", 2),
        ("video_id,openness\na.mp4,high\n", "not a number", 2),
        ("video_id,openness\na.mp4,0.5\nb.mp4,0.5\na.mp4,0.7\n", "duplicate video_id a.mp4", 4),
        ("video_id,openness\n,0.5\n", "empty video_id", 2),
        ("video_id,openness\na.mp4,0.5,0.7\n", "more cells", 2),
        ("", "no video_id column", None),
    ],
)
def test_bad_csv_names_the_file_and_line(tmp_path, text, message, line):
    path = write_csv(tmp_path / "bad labels.csv", text)
    with pytest.raises(LabelError, match=message) as caught:
        load_label_csv(path)
    assert str(path) in str(caught.value)
    if line is not None:
        assert f"{path}:{line}:" in str(caught.value)


def test_csv_that_is_not_utf8_is_a_label_error(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes("video_id,openness\nJos\xe9.mp4,0.5\n".encode("latin-1"))
    with pytest.raises(LabelError, match="latin.csv"):
        load_label_csv(path)


def test_load_label_file_dispatches_on_suffix(tmp_path):
    csv_path = write_csv(tmp_path / "scores.csv", "video_id,openness\na.mp4,0.5\n")
    pickle_path = tmp_path / "annotation_x.pkl"
    pickle_path.write_bytes(pickle.dumps({"openness": {"a.mp4": 0.5}}, protocol=PICKLE_PROTOCOL))
    assert load_label_file(csv_path) == load_label_file(pickle_path) == {"a.mp4": {"openness": 0.5}}
    with pytest.raises(LabelError, match="unsupported"):
        load_label_file(write_csv(tmp_path / "scores.txt", "video_id,openness\n"))
    with pytest.raises(LabelError, match="not found"):
        load_label_file(tmp_path / "missing.csv")


# --- merging, attaching, joining ------------------------------------------------------


def test_merge_tables_later_wins_per_label():
    merged = merge_tables(
        [{"a": {"openness": 0.1, "neuroticism": 0.2}}, {"a": {"openness": 0.9}, "b": {"openness": 0.3}}]
    )
    assert merged == {"a": {"openness": 0.9, "neuroticism": 0.2}, "b": {"openness": 0.3}}


def test_write_labels_merges_unless_replace(tmp_path):
    write_labels(tmp_path, {"a.mp4": {"openness": 0.1, "neuroticism": 0.2}, "b.mp4": {"openness": 0.3}})
    write_labels(tmp_path, {"a.mp4": {"openness": 0.9}, "c.mp4": {"interview": 0.4}})
    assert read_label_table(tmp_path) == {
        "a.mp4": {"openness": 0.9, "neuroticism": 0.2},
        "b.mp4": {"openness": 0.3},
        "c.mp4": {"interview": 0.4},
    }
    write_labels(tmp_path, {"c.mp4": {"openness": 0.5}}, replace=True)
    assert read_label_table(tmp_path) == {"c.mp4": {"openness": 0.5}}
    assert [path.name for path in tmp_path.iterdir()] == [LABELS_FILE]


def test_written_labels_round_trip_exactly_whatever_the_float_type(tmp_path):
    rng = np.random.default_rng(0)
    table = {
        f"{index}.mp4": {trait: value for trait, value in zip(TRAITS, rng.random(len(TRAITS)))} for index in range(20)
    }
    table["numpy32.mp4"] = {"openness": np.float32(0.1)}
    write_labels(tmp_path, table)
    read_back = read_label_table(tmp_path)
    assert read_back.keys() == table.keys()
    for video_id, scores in table.items():
        assert read_back[video_id] == {label: float(value) for label, value in scores.items()}


@pytest.mark.parametrize(
    "table, message", [({"a.mp4": {"openness": 2.0}}, "outside"), ({"a.mp4": {"charisma": 0.5}}, "charisma")]
)
def test_write_labels_refuses_what_it_could_not_read_back(tmp_path, table, message):
    with pytest.raises(LabelError, match=message):
        write_labels(tmp_path, table)
    assert not (tmp_path / LABELS_FILE).exists()


def test_read_label_table_of_an_unlabelled_cache_is_empty(tmp_path):
    assert read_label_table(tmp_path) == {}


def test_label_matrix_joins_by_id_with_nan_where_unknown():
    table = {"a.mp4": {"openness": 0.25, "interview": 0.5}, "b.mp4": {"neuroticism": 0.75}}
    matrix = label_matrix(table, ["b.mp4", "unknown.mp4", "a.mp4"])
    assert matrix.shape == (3, len(LABEL_NAMES)) and matrix.dtype == np.float32
    openness, neuroticism, interview = (LABEL_NAMES.index(name) for name in ("openness", "neuroticism", "interview"))
    assert matrix[2, openness] == 0.25 and matrix[2, interview] == 0.5 and matrix[0, neuroticism] == 0.75
    assert np.isnan(matrix[1]).all()
    assert np.isfinite(matrix).sum() == sum(len(scores) for scores in table.values())
    assert label_matrix(table, []).shape == (0, len(LABEL_NAMES))


# --- attaching labels to a cache ---------------------------------------------------


def test_mismatch_hint_names_ids_without_their_extension():
    cached = {"_01AyUz9J9I.002.mp4", "b.mp4"}
    assert mismatch_hint({"_01AyUz9J9I.002": {}}, cached) == (
        "1 labelled id lacks the file extension the cached ids carry "
        "('_01AyUz9J9I.002' is cached as '_01AyUz9J9I.002.mp4'): add it to the ids"
    )
    assert mismatch_hint({"zzz.mp4": {}}, cached).startswith("labelled ids look like 'zzz.mp4', cached ids like")


def test_a_replace_matching_no_cached_video_is_refused_and_a_merge_is_hinted(tmp_path):
    cache_dir = write_random_cache(tmp_path / "cache", range(3))
    kept = write_csv(tmp_path / "kept.csv", f"video_id,openness\n{random_record(0).video_id},0.5\n")
    attach_labels(cache_dir, [kept])
    bare = write_csv(tmp_path / "bare.csv", "video_id,openness\nvideo-00001,0.25\n")
    with pytest.raises(LabelError, match="nothing was changed. Likely cause: 1 labelled id lacks the file extension"):
        attach_labels(cache_dir, [bare], replace=True)
    assert read_label_table(cache_dir) == {random_record(0).video_id: {"openness": 0.5}}
    merged = attach_labels(cache_dir, [bare])
    assert (merged.matched, merged.cached) == (0, 3) and merged.hint.startswith("1 labelled id lacks")
    assert attach_labels(cache_dir, [kept], replace=True).hint is None
    assert read_label_table(cache_dir) == {random_record(0).video_id: {"openness": 0.5}}


def test_label_files_that_label_no_cached_video_are_warned_about():
    tables = {Path("train.pkl"): {"a.mp4": {"openness": 0.5}}, Path("test.csv"): {"c": {"openness": 0.5}}}
    warnings = label_file_warnings(tables, {"a.mp4", "c.mp4"})
    assert warnings == [
        "test.csv: labels none of the 2 cached videos (it has 1 labelled id); 1 labelled id lacks the file extension "
        "the cached ids carry ('c' is cached as 'c.mp4'): add it to the ids"
    ]
    assert label_file_warnings(tables, set()) == []
    assert labelled_count({"a.mp4": {"openness": 0.5}, "b.mp4": {}}, ["a.mp4", "b.mp4", "c.mp4"]) == 1
