"""train.data on real HDF5 caches written with CacheWriter."""

import numpy as np
import pytest

from cache.labels import read_label_table, write_labels
from cache.reader import CacheReader
from train.config import FitOptions
from train.data import (
    HOLDOUT_SPLIT,
    CacheShape,
    DataError,
    Normalization,
    SplitNameError,
    centre_frames,
    fit_normalization,
    load_cache,
    model_inputs,
    partition,
    resolve_splits,
    source_ids,
    training_batches,
    training_dataset,
    training_stream,
)
from train.synthetic import write_synthetic_cache

FRAMES = 4
SHAPE = CacheShape(FRAMES, 2)  # the cache's: two frames per segment


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """train 30 / validation 10 / test 10 videos, T = 4, two frames per segment."""
    return write_synthetic_cache(
        tmp_path_factory.mktemp("data") / "cache",
        {"train": 30, "validation": 10, "test": 10},
        frames=FRAMES,
        frames_per_segment=2,
    )


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
    assert data.shape == SHAPE


def test_videos_without_all_five_labels_are_left_out(tmp_path):
    cache = write_synthetic_cache(tmp_path / "cache", {"train": 6}, frames=FRAMES)
    table = read_label_table(cache)
    del table["train-00001.mp4"]
    del table["train-00004.mp4"]["neuroticism"]
    write_labels(cache, table, replace=True)
    loaded = load_cache(CacheReader(cache))
    assert list(loaded.splits["train"].video_ids) == [
        "train-00000.mp4",
        "train-00002.mp4",
        "train-00003.mp4",
        "train-00005.mp4",
    ]
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
    inputs = model_inputs(flat, np.arange(3), centre_frames(3, SHAPE), statistics, ("audio",))
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
    frame_index = centre_frames(len(train), SHAPE)
    inputs = model_inputs(train, np.arange(len(train)), frame_index, statistics, ("visual", "audio", "face"))
    found = train.face[np.arange(len(train))[:, None], frame_index]
    assert inputs["visual"].shape == (30, FRAMES, 2048) and inputs["visual"].dtype == np.float32
    assert (~found).any(), "the synthetic cache should have frames without a face"
    assert np.all(inputs["visual"][~found] == 0.0)
    assert found.any(), "the synthetic cache should have frames with a face"
    chosen = train.visual[np.arange(len(train))[:, None], frame_index].astype(np.float32)
    expected = (chosen[found] - statistics.visual_mean) / statistics.visual_std
    np.testing.assert_allclose(inputs["visual"][found], expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(inputs["face"][..., 0], found.astype(np.float32))
    assert abs(inputs["audio"].mean()) < 0.05


def test_partition_uses_named_splits_and_reports_the_others(data):
    parts = partition(data.splits, FitOptions())
    assert not parts.held_out
    assert list(parts.named()) == ["train", "validation", "test"]
    assert parts.roles() == {"train": "train", "validation": "selection", "test": "report"}
    assert len(parts.selection) == 10


def test_selecting_on_another_split_reports_every_split_under_its_own_name(data):
    parts = partition(data.splits, FitOptions(validation_split="test"))
    named = parts.named()
    assert parts.selection_name == "test" and parts.selection is data.splits["test"]
    assert set(named) == {"train", "validation", "test"}
    assert named["validation"] is data.splits["validation"] and named["test"] is data.splits["test"]
    assert parts.roles() == {"train": "train", "test": "selection", "validation": "report"}


@pytest.mark.parametrize(
    ("train_split", "validation_split", "flag"),
    [("train", "validaton", "validation_split 'validaton'"), ("trian", "validation", "train_split 'trian'")],
)
def test_a_split_name_the_cache_lacks_is_an_error_naming_the_splits_it_has(data, train_split, validation_split, flag):
    with pytest.raises(
        SplitNameError,
        match=f"{flag} names no labelled split; the cache's labelled splits are: test, train, validation",
    ):
        partition(data.splits, FitOptions(train_split=train_split, validation_split=validation_split))


def test_only_the_default_split_names_fall_back(data):
    assert resolve_splits(["data"], "train", "validation") == ("data", None)
    assert resolve_splits(["train", "test"], "train", "validation") == ("train", None)
    assert resolve_splits(["train", "test"], "train", "test") == ("train", "test")
    with pytest.raises(SplitNameError, match="also the training split"):
        resolve_splits(["train", "test"], "train", "train")
    with pytest.raises(SplitNameError, match="train_split 'data'"):
        resolve_splits(["train", "test"], "data", "validation")


def test_single_labelled_split_holds_out_a_seeded_recorded_fraction(data):
    only = {"train": data.splits["train"]}
    parts = partition(only, FitOptions(holdout_seed=7))
    again = partition(only, FitOptions(holdout_seed=7))
    other = partition(only, FitOptions(holdout_seed=8))
    assert parts.held_out and parts.selection_name == HOLDOUT_SPLIT
    assert len(parts.selection) == 6 and len(parts.train) == 24
    assert list(parts.named()) == ["train", HOLDOUT_SPLIT]
    assert set(parts.selection.video_ids).isdisjoint(parts.train.video_ids)
    assert list(parts.selection.video_ids) == list(again.selection.video_ids)
    assert list(parts.selection.video_ids) != list(other.selection.video_ids)


def clips_of_sources(split, clips_per_source):
    """The split with ChaLearn-style ids: ``source-NN.00C.mp4``, ``clips_per_source`` clips per source."""
    ids = np.array(
        [f"source-{row // clips_per_source:02d}.{row % clips_per_source:03d}.mp4" for row in range(len(split))]
    )
    return type(split)(ids, split.visual, split.audio, split.face, split.labels)


def test_holdout_keeps_every_clip_of_a_source_on_one_side(data):
    train = clips_of_sources(data.splits["train"], 3)  # 10 sources of 3 clips
    for seed in range(5):
        parts = partition({"train": train}, FitOptions(holdout_seed=seed))
        held, kept = (set(source_ids(split.video_ids, ".")) for split in (parts.selection, parts.train))
        assert len(held) == 2 and len(kept) == 8 and held.isdisjoint(kept)
        assert len(parts.selection) == 6 and len(parts.train) == 24
    draws = {tuple(partition({"train": train}, FitOptions(holdout_seed=seed)).selection.video_ids) for seed in range(5)}
    assert len(draws) > 1, "the hold-out should depend on its seed"


def test_source_delimiter_is_an_option(data):
    train = clips_of_sources(data.splits["train"], 3)
    assert list(source_ids(train.video_ids[:4], ".")) == ["source-00", "source-00", "source-00", "source-01"]
    assert list(source_ids(train.video_ids[:2], "-")) == ["source", "source"]
    assert list(source_ids(train.video_ids[:2], "")) == list(train.video_ids[:2])
    each_its_own = partition({"train": train}, FitOptions(source_delimiter=""))
    assert len(set(source_ids(each_its_own.selection.video_ids, "."))) > 2, (
        "without grouping, clips of one source land on both sides"
    )
    with pytest.raises(DataError, match="1 source video"):
        partition({"train": train}, FitOptions(source_delimiter="-"))


def test_training_split_without_validation_holds_out_but_never_uses_test(data):
    parts = partition({"train": data.splits["train"], "test": data.splits["test"]}, FitOptions())
    assert parts.held_out and set(parts.others) == {"test"}


def test_partition_refuses_unusable_data(data):
    with pytest.raises(DataError, match="no labelled videos"):
        partition({}, FitOptions())
    with pytest.raises(
        SplitNameError, match="train_split 'train' names no labelled split; the cache's labelled splits are: a, b"
    ):
        partition({"a": data.splits["train"], "b": data.splits["test"]}, FitOptions())
    with pytest.raises(SplitNameError, match="split named 'holdout'"):
        partition({"train": data.splits["train"], "holdout": data.splits["test"]}, FitOptions())


def test_training_batches_cover_each_video_once_per_epoch_and_pick_one_frame_per_segment(data):
    train = data.splits["train"]
    statistics = fit_normalization(train)
    batches = training_batches(train, statistics, SHAPE, FitOptions(batch_size=8, seed=1), ("visual", "audio", "face"))
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
        stream = training_batches(train, statistics, SHAPE, FitOptions(batch_size=30, seed=seed), names)
        return [next(stream)[0]["visual"] for _ in range(3)]

    first, again, other = first_epochs(1), first_epochs(1), first_epochs(2)
    for left, right in zip(first, again):
        np.testing.assert_array_equal(left, right)
    assert not np.array_equal(first[0], other[0])
    assert not np.array_equal(np.sort(first[0], axis=0), np.sort(first[1], axis=0)), (
        "epochs should pick different frames"
    )


def test_random_frames_stay_inside_their_segment():
    from train.data import random_frames

    picks = random_frames(np.random.default_rng(0), 50, CacheShape(FRAMES, 3))
    segments = picks // 3
    np.testing.assert_array_equal(segments, np.broadcast_to(np.arange(FRAMES), (50, FRAMES)))
    assert set(np.unique(picks % 3)) == {0, 1, 2}


@pytest.mark.parametrize("names", [("visual", "audio", "face"), ("audio",)])
def test_tensorflow_stream_equals_the_numpy_stream(data, names):
    train = data.splits["train"]
    statistics = fit_normalization(train)
    options = FitOptions(batch_size=8, seed=3)
    numpy_stream = training_batches(train, statistics, SHAPE, options, names)
    dataset = iter(training_dataset(train, statistics, SHAPE, options, names))
    for _ in range(9):  # two epochs of four batches, and the first of the third
        (expected, expected_labels), (inputs, labels) = next(numpy_stream), next(dataset)
        assert set(inputs) == set(names)
        for name in names:
            np.testing.assert_array_equal(inputs[name].numpy(), expected[name])
        np.testing.assert_array_equal(labels.numpy(), expected_labels)


def test_other_backends_get_the_numpy_stream(data):
    train = data.splits["train"]
    statistics = fit_normalization(train)
    options = FitOptions(batch_size=8, seed=3)
    stream = training_stream(train, statistics, SHAPE, options, ("audio",), backend="jax")
    inputs, labels = next(stream)
    expected, expected_labels = next(training_batches(train, statistics, SHAPE, options, ("audio",)))
    np.testing.assert_array_equal(inputs["audio"], expected["audio"])
    np.testing.assert_array_equal(labels, expected_labels)
