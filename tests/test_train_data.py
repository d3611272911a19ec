"""train.data on real HDF5 caches written with CacheWriter."""

import numpy as np
import pytest

from cache.labels import read_label_table, write_labels
from cache.reader import CacheReader
from train.data import (
    DataError,
    Normalization,
    centre_frames,
    fit_normalization,
    load_cache,
    model_inputs,
    partition,
    training_batches,
)
from train.synthetic import write_synthetic_cache

FRAMES = 4


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """train 30 / validation 10 / test 10 videos, T = 4, two frames per segment."""
    return write_synthetic_cache(tmp_path_factory.mktemp("data") / "cache", {"train": 30, "validation": 10, "test": 10}, frames=FRAMES, frames_per_segment=2)


@pytest.fixture(scope="module")
def data(cache):
    return load_cache(CacheReader(cache))


def test_load_cache_reads_every_split_with_labels(data):
    assert {name: len(split) for name, split in data.splits.items()} == {"test": 10, "train": 30, "validation": 10}
    train = data.splits["train"]
    assert train.visual.shape == (30, FRAMES * 2, 2048) and train.visual.dtype == np.float16
    assert train.audio.shape == (30, FRAMES, 68)
    assert train.face.shape == (30, FRAMES * 2)
    assert train.labels.shape == (30, 5) and np.isfinite(train.labels).all()
    assert (data.frames, data.frames_per_segment) == (FRAMES, 2)


def test_videos_without_all_five_labels_are_left_out(tmp_path):
    cache = write_synthetic_cache(tmp_path / "cache", {"train": 6}, frames=FRAMES)
    table = read_label_table(cache)
    del table["train-00001.mp4"]
    del table["train-00004.mp4"]["neuroticism"]
    write_labels(cache, table, replace=True)
    loaded = load_cache(CacheReader(cache))
    assert list(loaded.splits["train"].video_ids) == ["train-00000.mp4", "train-00002.mp4", "train-00003.mp4", "train-00005.mp4"]
    assert loaded.unlabelled == {"train": 2}


def test_normalization_uses_the_training_split_only(data):
    train = data.splits["train"]
    statistics = fit_normalization(train)
    face_frames = train.visual.astype(np.float64)[train.face]
    np.testing.assert_allclose(statistics.visual_mean, face_frames.mean(axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(statistics.visual_std, face_frames.std(axis=0), rtol=1e-4, atol=1e-6)
    audio = train.audio.reshape(-1, 68)
    np.testing.assert_allclose(statistics.audio_mean, audio.mean(axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(statistics.label_mean, train.labels.mean(axis=0), rtol=1e-6)
    everything = np.concatenate([split.labels for split in data.splits.values()])
    assert not np.allclose(statistics.label_mean, everything.mean(axis=0), rtol=0, atol=1e-6)


def test_constant_features_are_centred_not_blown_up(data):
    train = data.splits["train"]
    flat = type(train)(train.video_ids, train.visual, np.ones_like(train.audio), train.face, train.labels)
    statistics = fit_normalization(flat)
    assert np.all(statistics.audio_std == 1.0)
    inputs = model_inputs(flat, np.arange(3), centre_frames(3, FRAMES, 2), statistics, ("audio",))
    assert np.all(inputs["audio"] == 0.0)


def test_normalization_round_trips_through_a_file(data, tmp_path):
    statistics = fit_normalization(data.splits["train"])
    statistics.save(tmp_path / "normalization.npz")
    loaded = Normalization.load(tmp_path / "normalization.npz")
    for name in ("visual_mean", "visual_std", "audio_mean", "audio_std", "label_mean"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(statistics, name))


def test_model_inputs_are_standardised_with_no_face_frames_at_the_mean(data):
    train = data.splits["train"]
    statistics = fit_normalization(train)
    frame_index = centre_frames(len(train), FRAMES, 2)
    inputs = model_inputs(train, np.arange(len(train)), frame_index, statistics, ("visual", "audio", "face"))
    found = train.face[np.arange(len(train))[:, None], frame_index]
    assert inputs["visual"].shape == (30, FRAMES, 2048) and inputs["visual"].dtype == np.float32
    assert (~found).any(), "the synthetic cache should have frames without a face"
    assert np.all(inputs["visual"][~found] == 0.0)
    expected = (train.visual[5, frame_index[5, 0]].astype(np.float32) - statistics.visual_mean) / statistics.visual_std
    if found[5, 0]:
        np.testing.assert_allclose(inputs["visual"][5, 0], expected, rtol=1e-5)
    np.testing.assert_array_equal(inputs["face"][..., 0], found.astype(np.float32))
    assert abs(inputs["audio"].mean()) < 0.05


def test_partition_uses_named_splits_and_reports_the_others(data):
    parts = partition(data.splits, "train", "validation", 0.2, 0)
    assert not parts.held_out
    assert list(parts.named()) == ["train", "validation", "test"]
    assert len(parts.validation) == 10


def test_single_labelled_split_holds_out_a_seeded_recorded_fraction(data):
    only = {"train": data.splits["train"]}
    parts = partition(only, "train", "validation", 0.2, holdout_seed=7)
    again = partition(only, "train", "validation", 0.2, holdout_seed=7)
    other = partition(only, "train", "validation", 0.2, holdout_seed=8)
    assert parts.held_out and len(parts.validation) == 6 and len(parts.train) == 24
    assert set(parts.validation.video_ids).isdisjoint(parts.train.video_ids)
    assert list(parts.validation.video_ids) == list(again.validation.video_ids)
    assert list(parts.validation.video_ids) != list(other.validation.video_ids)


def test_training_split_without_validation_holds_out_but_never_uses_test(data):
    parts = partition({"train": data.splits["train"], "test": data.splits["test"]}, "train", "validation", 0.2, 0)
    assert parts.held_out and set(parts.others) == {"test"}


def test_partition_refuses_unusable_data(data):
    with pytest.raises(DataError, match="no labelled videos"):
        partition({}, "train", "validation", 0.2, 0)
    with pytest.raises(DataError, match="no labelled split named 'train'"):
        partition({"a": data.splits["train"], "b": data.splits["test"]}, "train", "validation", 0.2, 0)


def test_training_batches_cover_each_video_once_per_epoch_and_pick_one_frame_per_segment(data):
    train = data.splits["train"]
    statistics = fit_normalization(train)
    batches = training_batches(train, statistics, FRAMES, 2, 8, seed=1, names=("visual", "audio", "face"))
    steps = 4  # ceil(30 / 8)
    for _ in range(2):
        epoch = [next(batches) for _ in range(steps)]
        assert [len(labels) for _, labels in epoch] == [8, 8, 8, 6]
        labels = np.concatenate([labels for _, labels in epoch])
        np.testing.assert_array_equal(np.sort(labels, axis=0), np.sort(train.labels, axis=0))
        assert epoch[0][0]["visual"].shape == (8, FRAMES, 2048)


def test_frame_picks_vary_by_epoch_and_repeat_with_the_seed(data):
    train = data.splits["train"]
    statistics = fit_normalization(train)
    names = ("visual",)

    def first_epochs(seed):
        stream = training_batches(train, statistics, FRAMES, 2, 30, seed, names)
        return [next(stream)[0]["visual"] for _ in range(3)]

    first, again, other = first_epochs(1), first_epochs(1), first_epochs(2)
    for left, right in zip(first, again):
        np.testing.assert_array_equal(left, right)
    assert not np.array_equal(first[0], other[0])
    assert not np.array_equal(np.sort(first[0], axis=0), np.sort(first[1], axis=0)), "epochs should pick different frames"


def test_random_frames_stay_inside_their_segment():
    from train.data import random_frames

    picks = random_frames(np.random.default_rng(0), 50, FRAMES, 3)
    segments = picks // 3
    np.testing.assert_array_equal(segments, np.broadcast_to(np.arange(FRAMES), (50, FRAMES)))
    assert set(np.unique(picks % 3)) == {0, 1, 2}
