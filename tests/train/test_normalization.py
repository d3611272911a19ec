"""train.normalization: statistics of the training split and the one standardisation."""

import numpy as np

from train.batches import centre_frames, model_inputs
from train.dataset import CacheShape
from train.normalization import Normalization, fit_normalization

SHAPE = CacheShape(4, 2)  # the labelled_data cache's: two frames per segment


def test_normalization_uses_the_training_split_only(labelled_data):
    train = labelled_data.splits["train"]
    statistics = fit_normalization(train)
    face_frames = train.visual.astype(np.float64)[train.face]
    np.testing.assert_allclose(statistics.visual_mean, face_frames.mean(axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(statistics.visual_std, face_frames.std(axis=0), rtol=1e-4, atol=1e-6)
    audio = train.audio.reshape(-1, 68)
    np.testing.assert_allclose(statistics.audio_mean, audio.mean(axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(statistics.label_mean, train.labels.mean(axis=0), rtol=1e-6)
    everything = np.concatenate([split.labels for split in labelled_data.splits.values()])
    assert not np.allclose(statistics.label_mean, everything.mean(axis=0), rtol=0, atol=1e-6)


def test_constant_features_are_centred_not_blown_up(labelled_data):
    train = labelled_data.splits["train"]
    flat = type(train)(train.video_ids, train.visual, np.ones_like(train.audio), train.face, train.labels)
    statistics = fit_normalization(flat)
    assert np.all(statistics.audio_std == 1.0)
    inputs = model_inputs(flat, np.arange(3), centre_frames(3, SHAPE), statistics, ("audio",))
    assert np.all(inputs["audio"] == 0.0)


def test_normalization_round_trips_through_a_file(labelled_data, tmp_path):
    statistics = fit_normalization(labelled_data.splits["train"])
    statistics.save(tmp_path / "normalization.npz")
    loaded = Normalization.load(tmp_path / "normalization.npz")
    for name in ("visual_mean", "visual_std", "audio_mean", "audio_std", "label_mean"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(statistics, name))
