"""train.batches: head inputs, the numpy batches and the tf.data batches, on a real cache."""

import numpy as np
import pytest

from train.batches import (
    centre_frames,
    model_inputs,
    random_frames,
    training_batches,
    training_dataset,
    training_stream,
)
from train.config import FitOptions
from train.dataset import CacheShape
from train.normalization import fit_normalization

FRAMES = 4  # T of the labelled_data fixture
SHAPE = CacheShape(FRAMES, 2)  # the labelled_data cache's: two frames per segment


def test_model_inputs_are_standardised_with_no_face_frames_at_the_mean(labelled_data):
    train = labelled_data.splits["train"]
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


def test_training_batches_cover_each_video_once_per_epoch_and_pick_one_frame_per_segment(labelled_data):
    train = labelled_data.splits["train"]
    statistics = fit_normalization(train)
    batches = training_batches(train, statistics, SHAPE, FitOptions(batch_size=8, seed=1), ("visual", "audio", "face"))
    steps = 4  # ceil(30 / 8)
    for _ in range(2):
        epoch = [next(batches) for _ in range(steps)]
        assert [len(labels) for _, labels in epoch] == [8, 8, 8, 6]
        labels = np.concatenate([labels for _, labels in epoch])
        np.testing.assert_array_equal(np.sort(labels, axis=0), np.sort(train.labels, axis=0))
        assert epoch[0][0]["visual"].shape == (8, FRAMES, 2048)


def test_frame_picks_vary_by_epoch_and_repeat_with_the_seed(labelled_data):
    train = labelled_data.splits["train"]
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
    picks = random_frames(np.random.default_rng(0), 50, CacheShape(FRAMES, 3))
    segments = picks // 3
    np.testing.assert_array_equal(segments, np.broadcast_to(np.arange(FRAMES), (50, FRAMES)))
    assert set(np.unique(picks % 3)) == {0, 1, 2}


@pytest.mark.parametrize("names", [("visual", "audio", "face"), ("audio",)])
def test_tensorflow_stream_equals_the_numpy_stream(labelled_data, names):
    train = labelled_data.splits["train"]
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


def test_other_backends_get_the_numpy_stream(labelled_data):
    train = labelled_data.splits["train"]
    statistics = fit_normalization(train)
    options = FitOptions(batch_size=8, seed=3)
    stream = training_stream(train, statistics, SHAPE, options, ("audio",), backend="jax")
    inputs, labels = next(stream)
    expected, expected_labels = next(training_batches(train, statistics, SHAPE, options, ("audio",)))
    np.testing.assert_array_equal(inputs["audio"], expected["audio"])
    np.testing.assert_array_equal(labels, expected_labels)
