"""extract/audio.py: agreement with pyAudioAnalysis and alignment to the segments."""

from __future__ import annotations

import numpy as np
import pytest
from pyAudioAnalysis import ShortTermFeatures

from cache.schema import AUDIO_DIM
from extract.audio import (
    AudioOptions,
    audio_features,
    frame_features,
    segment_means,
    segment_windows,
    short_term_batches,
    short_term_features,
)
from extract.synthetic import tone

RATE = 16000
BASE_FEATURES = AUDIO_DIM // 2  # the 34 features; the other 34 are their deltas
# Agreement with pyAudioAnalysis, as a fraction of each feature's largest magnitude
# over the frames (at least 1, so features within [-1, 1] get it as an absolute
# bound). Only summation order differs from its per-frame loop: measured at most
# 1.4e-14 (MFCCs), exactly 0 for zcr, energy, centroid, spread, flux and roll-off.
# Roll-off steps by 1/bins, so this bound also demands it exactly.
TOLERANCE = 1e-10


def _signal(seconds=4.0, onset=0.0):
    return tone(seconds, 440.0, 0.5, onset, rate=RATE).astype(np.float64) * 32767


def _reference(signal, rate, window_samples, step_samples):
    """(num_windows, 68) from pyAudioAnalysis itself."""
    features, names = ShortTermFeatures.feature_extraction(signal, rate, window_samples, step_samples, deltas=True)
    assert len(names) == AUDIO_DIM
    return features.T


def assert_agrees(ours, reference):
    assert ours.shape == reference.shape
    # A delta is the difference of two values of its feature, so it takes the feature's scale.
    scale = np.tile(np.maximum(np.abs(reference[:, :BASE_FEATURES]).max(axis=0), 1.0), 2)
    excess = np.abs(ours - reference) / (TOLERANCE * scale)
    frame, feature = np.unravel_index(np.argmax(excess), excess.shape)
    assert (excess <= 1).all(), (
        f"feature {feature}, frame {frame}: {ours[frame, feature]!r} != {reference[frame, feature]!r}"
    )


SIGNAL_NAMES = ["tone", "noise", "silence", "int16_full_range", "tone_after_silence", "fading_noise_with_dc"]


def _test_signal(name, seconds, rate):
    """(num_samples,) int16-range samples of the named kind."""
    rng = np.random.default_rng(7)
    times = np.arange(round(seconds * rate)) / rate
    signals = {
        "tone": 20000 * np.sin(2 * np.pi * 440.0 * times),
        "noise": rng.normal(0.0, 3000.0, times.shape),
        "silence": np.zeros(times.shape),
        "int16_full_range": rng.integers(-(2**15), 2**15, times.shape, dtype=np.int16),
        "tone_after_silence": 10000 * np.sin(2 * np.pi * 220.0 * times) * (times > seconds / 2),
        "fading_noise_with_dc": rng.normal(0.0, 30000.0, times.shape) * np.exp(-3.0 * times) + 5000,
    }
    return signals[name]


# (rate in Hz, window samples, step samples): 50/25 ms at both rates, an odd window
# with a hop that does not divide it, the shortest usual window at 44.1 kHz, and
# one-second windows as the "window" mode uses.
FRAMINGS = [(16000, 800, 400), (44100, 2205, 1102), (16000, 801, 333), (44100, 441, 220), (16000, 16000, 16000)]


@pytest.mark.parametrize("name", SIGNAL_NAMES)
@pytest.mark.parametrize("rate, window_samples, step_samples", FRAMINGS)
def test_frame_features_agree_with_pyaudioanalysis(name, rate, window_samples, step_samples):
    signal = _test_signal(name, 3.0, rate)
    ours = frame_features(signal, rate, window_samples, step_samples)
    assert_agrees(ours, _reference(signal, rate, window_samples, step_samples))


def test_batches_do_not_change_the_features():
    signal = _test_signal("noise", 3.0, RATE)
    reference = _reference(signal, RATE, 800, 400)
    assert_agrees(frame_features(signal, RATE, 800, 400, frames_per_batch=7), reference)
    assert_agrees(frame_features(signal, RATE, 800, 400, frames_per_batch=1), reference)


def test_short_term_features_are_pyaudioanalysis_transposed():
    signal = _signal(2.0)
    assert_agrees(short_term_features(signal, RATE, 0.050, 0.025), _reference(signal, RATE, 800, 400))


def test_a_signal_shorter_than_a_window_is_padded_to_one():
    signal = _signal(0.01)
    ours = short_term_features(signal, RATE, 0.050, 0.025)
    assert ours.shape == (1, AUDIO_DIM)
    assert_agrees(ours, _reference(np.pad(signal, (0, 800 - len(signal))), RATE, 800, 400))


def test_silence_gives_finite_features_like_pyaudioanalysis():
    silence = np.zeros(RATE)
    reference = _reference(silence, RATE, 800, 400)
    assert np.isfinite(reference).all()
    assert_agrees(short_term_features(silence, RATE, 0.050, 0.025), reference)
    features = audio_features(silence, RATE, 1.0, 4, AudioOptions())
    assert (
        np.isfinite(features).all()
        and np.isfinite(audio_features(silence, RATE, 1.0, 4, AudioOptions(audio_mode="window"))).all()
    )


def test_a_window_too_short_for_the_chroma_map_fails_as_in_pyaudioanalysis():
    signal = _signal(1.0)
    with pytest.raises((ValueError, IndexError)):
        ShortTermFeatures.feature_extraction(signal, RATE, 160, 80, deltas=True)
    with pytest.raises(ValueError, match="too short"):
        frame_features(signal, RATE, 160, 80)


def test_segment_means_average_the_windows_centred_in_each_segment():
    signal = _signal(4.0)
    features = short_term_features(signal, RATE, 0.050, 0.025)
    means = segment_means([features], 0.050, 0.025, 4.0, 4)
    centres = np.arange(len(features)) * 0.025 + 0.025
    for segment in range(4):
        members = (centres >= segment) & (centres < segment + 1)
        np.testing.assert_allclose(means[segment], features[members].mean(axis=0), rtol=1e-6)
    assert means.dtype == np.float32 and means.shape == (4, AUDIO_DIM)


def test_a_tone_starting_half_way_shows_only_in_the_later_segments():
    signal = _signal(4.0, onset=2.0)
    features = audio_features(signal, RATE, 4.0, 8, AudioOptions())
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
    features = audio_features(None, RATE, 3.0, 5, AudioOptions())
    assert features.shape == (5, AUDIO_DIM) and not features.any()


@pytest.mark.parametrize("seconds", [0.01, 0.3])
def test_very_short_sound_still_fills_every_segment(seconds):
    features = audio_features(_signal(seconds), RATE, seconds, 10, AudioOptions())
    assert features.shape == (10, AUDIO_DIM) and np.isfinite(features).all()


def _pyaudioanalysis_segments(signal, rate, duration, segments, window_samples, step_samples, mode):
    """(T, 68) float64: what audio_features should give, from pyAudioAnalysis itself.

    ``mean``: the average of pyAudioAnalysis' windows whose central sample lies in
    each segment, decided in whole samples (twice the centre, times T, against
    twice the segment bounds), not with audio_features' formula in seconds.
    ``window``: pyAudioAnalysis' windows of one segment each, the last repeated
    when the sound ends first.
    """
    if mode == "window":
        windows = _reference(signal, rate, window_samples, window_samples)[:segments]
        return np.concatenate([windows, np.repeat(windows[-1:], segments - len(windows), axis=0)])
    windows = _reference(signal, rate, window_samples, step_samples)
    twice_centres = 2 * np.arange(len(windows)) * step_samples + window_samples
    twice_length = 2 * round(duration * rate)
    means = []
    for segment in range(segments):
        members = (segment * twice_length <= twice_centres * segments) & (
            twice_centres * segments < (segment + 1) * twice_length
        )
        assert members.any()
        means.append(windows[members].mean(axis=0))
    return np.array(means)


# Video durations around a 3 s sound track: 2.91 s leaves sound after the last segment,
# 3.2 s ends the sound early; with T = 7 no window centre falls on a segment bound.
@pytest.mark.parametrize("duration", [2.91, 3.2])
@pytest.mark.parametrize("mode", ["mean", "window"])
def test_audio_features_equal_pyaudioanalysis_per_segment(mode, duration):
    segments, window, step = 7, 0.050, 0.025
    signal = (
        np.round(_test_signal("fading_noise_with_dc", 3.0, RATE) + _test_signal("tone_after_silence", 3.0, RATE))
        .clip(-(2**15), 2**15 - 1)
        .astype(np.int16)
    )  # int16, as decode gives it
    window_samples = round(duration / segments * RATE) if mode == "window" else round(window * RATE)
    expected = _pyaudioanalysis_segments(signal, RATE, duration, segments, window_samples, round(step * RATE), mode)
    ours = audio_features(
        signal, RATE, duration, segments, AudioOptions(audio_window=window, audio_step=step, audio_mode=mode)
    )
    assert ours.shape == (segments, AUDIO_DIM) and ours.dtype == np.float32
    # float32 storage rounds by at most 2^-24 of each value; the port's own error is TOLERANCE of the feature's scale.
    scale = np.tile(np.maximum(np.abs(expected[:, :BASE_FEATURES]).max(axis=0), 1.0), 2)
    excess = np.abs(ours - expected) / (2.0**-24 * np.abs(expected) + TOLERANCE * scale)
    segment, feature = np.unravel_index(np.argmax(excess), excess.shape)
    assert (excess <= 1).all(), (
        f"segment {segment}, feature {feature}: {ours[segment, feature]!r} != {expected[segment, feature]!r}"
    )


def test_batches_of_a_long_track_give_the_features_of_one_batch():
    # 100 s at 16 kHz: several batches of windows, each normalised on its own by the whole track's offset and peak.
    signal = np.round(_test_signal("fading_noise_with_dc", 100.0, RATE)).clip(-(2**15), 2**15 - 1).astype(np.int16)
    batches = list(short_term_batches(signal, RATE, 0.050, 0.025))
    assert len(batches) > 1
    whole = frame_features(signal, RATE, 800, 400, frames_per_batch=len(signal))
    assert_agrees(np.concatenate(batches), whole)
    np.testing.assert_allclose(
        segment_means(batches, 0.050, 0.025, 100.0, 10), segment_means([whole], 0.050, 0.025, 100.0, 10), rtol=1e-6
    )
