"""extract/audio.py: agreement with pyAudioAnalysis and alignment to the segments."""

from __future__ import annotations

import numpy as np
import pytest
from pyAudioAnalysis import ShortTermFeatures

from cache.schema import AUDIO_DIM
from extract.audio import audio_features, segment_means, segment_windows, short_term_features
from extract.synthetic import tone

RATE = 16000


def _signal(seconds=4.0, onset=0.0):
    return tone(seconds, 440.0, 0.5, onset, rate=RATE).astype(np.float64) * 32767


def test_short_term_features_are_pyaudioanalysis_transposed():
    signal = _signal(2.0)
    direct, names = ShortTermFeatures.feature_extraction(signal, RATE, 800, 400, deltas=True)
    ours = short_term_features(signal, RATE, 0.050, 0.025)
    assert len(names) == AUDIO_DIM
    assert ours.shape == (direct.shape[1], AUDIO_DIM)
    np.testing.assert_array_equal(ours, direct.T)


def test_segment_means_average_the_windows_centred_in_each_segment():
    signal = _signal(4.0)
    features = short_term_features(signal, RATE, 0.050, 0.025)
    means = segment_means(features, 0.050, 0.025, 4.0, 4)
    centres = np.arange(len(features)) * 0.025 + 0.025
    for segment in range(4):
        members = (centres >= segment) & (centres < segment + 1)
        np.testing.assert_allclose(means[segment], features[members].mean(axis=0), rtol=1e-6)
    assert means.dtype == np.float32 and means.shape == (4, AUDIO_DIM)


def test_a_tone_starting_half_way_shows_only_in_the_later_segments():
    signal = _signal(4.0, onset=2.0)
    features = audio_features(signal, RATE, 4.0, 8, 0.050, 0.025, "mean")
    energy = features[:, 1]  # pyAudioAnalysis feature 1 is the frame energy
    assert energy[:4].max() < 1e-4
    assert energy[5:].min() > 100 * max(energy[:4].max(), 1e-9)


def test_window_mode_is_one_analysis_window_per_segment():
    signal = _signal(4.0)
    features = segment_windows(signal, RATE, 4.0, 4)
    direct, _ = ShortTermFeatures.feature_extraction(signal, RATE, RATE, RATE, deltas=True)
    assert features.shape == (4, AUDIO_DIM)
    np.testing.assert_allclose(features, direct.T[:4], rtol=1e-6)


def test_window_mode_repeats_the_last_window_when_sound_is_shorter_than_video():
    features = segment_windows(_signal(3.5), RATE, 4.0, 4)
    assert np.array_equal(features[3], features[2])


def test_no_sound_track_gives_zeros():
    features = audio_features(None, RATE, 3.0, 5, 0.050, 0.025, "mean")
    assert features.shape == (5, AUDIO_DIM) and not features.any()


@pytest.mark.parametrize("seconds", [0.01, 0.3])
def test_very_short_sound_still_fills_every_segment(seconds):
    features = audio_features(_signal(seconds), RATE, seconds, 10, 0.050, 0.025, "mean")
    assert features.shape == (10, AUDIO_DIM) and np.isfinite(features).all()
