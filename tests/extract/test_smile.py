"""extract/smile.py: openSMILE functionals per segment, equal to the opensmile package run on each segment's samples."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from extract.smile import SMILE_SETS, load_library, segment_bounds, smile_features

RATE = 16000  # Hz: the default audio_rate
SECONDS = 2.0  # a short sound track keeps ComParE (6373 values per segment) fast
SEGMENTS = 4


def voice_like(seconds: float, seed: int = 0) -> np.ndarray:
    """(seconds * RATE,) int16: a harmonic tone whose pitch changes every half second, with noise."""
    rng = np.random.default_rng(seed)
    times = np.arange(round(seconds * RATE)) / RATE
    pitch = 120.0 + 40.0 * np.floor(times / 0.5)  # Hz: each segment of a 2 s track has its own pitch
    phase = 2 * np.pi * np.cumsum(pitch) / RATE
    tone = sum(np.sin(harmonic * phase) / harmonic for harmonic in range(1, 6))
    envelope = 0.6 + 0.4 * np.sin(2 * np.pi * 3.0 * times)
    return np.clip(6000 * envelope * tone + rng.normal(0, 300, len(times)), -32768, 32767).astype(np.int16)


def reference(extractor: str, samples: np.ndarray) -> np.ndarray:
    """The opensmile package's own functionals of int16 samples, as its documentation feeds them: floats in [-1, 1)."""
    # Imported here, after its library: TensorFlow, loaded by other test modules, is already in this process.
    load_library()
    import opensmile

    smile = opensmile.Smile(
        feature_set=opensmile.FeatureSet[SMILE_SETS[extractor][0]], feature_level=opensmile.FeatureLevel.Functionals
    )
    return smile.process_signal(samples.astype(np.float32) / 2**15, RATE).to_numpy()[0]


@pytest.mark.parametrize(("extractor", "dimension"), [("egemaps", 88), ("compare", 6373)])
def test_each_row_equals_opensmile_on_the_samples_of_its_segment(extractor, dimension):
    signal = voice_like(SECONDS)
    features = smile_features(signal, RATE, SECONDS, SEGMENTS, extractor)
    assert features.shape == (SEGMENTS, dimension) and features.dtype == np.float32
    assert SMILE_SETS[extractor][1] == dimension
    per_segment = round(SECONDS / SEGMENTS * RATE)
    for segment in range(SEGMENTS):
        expected = reference(extractor, signal[segment * per_segment : (segment + 1) * per_segment])
        np.testing.assert_array_equal(features[segment], expected)
    # Segments of different pitch: rows that differ, so a misaligned span could not pass.
    assert len({row.tobytes() for row in features}) == SEGMENTS


def test_segments_shorter_than_60_ms_are_analysed_on_the_60_ms_around_them():
    signal = voice_like(0.1)  # 1600 samples: four 25 ms segments
    bounds = segment_bounds(len(signal), RATE, 0.1, SEGMENTS)
    # 960 samples each, centred on the segment, the last moved back inside the track.
    np.testing.assert_array_equal(bounds, [[0, 960], [120, 1080], [520, 1480], [640, 1600]])
    features = smile_features(signal, RATE, 0.1, SEGMENTS, "egemaps")
    assert np.isfinite(features).all()
    for row, (start, end) in zip(features, bounds, strict=True):
        np.testing.assert_array_equal(row, reference("egemaps", signal[start:end]))


def test_segments_past_the_end_of_a_short_sound_track_use_its_last_60_ms():
    signal = voice_like(1.0)  # a 1 s sound track under a 2 s video
    features = smile_features(signal, RATE, SECONDS, SEGMENTS, "egemaps")
    np.testing.assert_array_equal(features[:2], smile_features(signal, RATE, 1.0, 2, "egemaps"))
    last = reference("egemaps", signal[-960:])
    np.testing.assert_array_equal(features[2], last)
    np.testing.assert_array_equal(features[3], last)


def test_a_sound_track_shorter_than_60_ms_is_padded_with_silence():
    signal = voice_like(0.02)  # 320 samples: openSMILE alone gives NaN here
    features = smile_features(signal, RATE, 0.02, 2, "compare")
    assert np.isfinite(features).all()
    padded = np.concatenate([signal, np.zeros(960 - len(signal), np.int16)])
    np.testing.assert_array_equal(features[0], reference("compare", padded))


def test_silence_gives_finite_functionals_and_no_sound_track_gives_zeros():
    assert np.isfinite(smile_features(np.zeros(round(SECONDS * RATE), np.int16), RATE, SECONDS, 2, "egemaps")).all()
    np.testing.assert_array_equal(smile_features(None, RATE, SECONDS, 3, "compare"), np.zeros((3, 6373), np.float32))


def test_functionals_are_the_same_in_a_process_that_loaded_tensorflow_first(tmp_path):
    # openSMILE's library crashed such a process until it was loaded binding its own symbols first.
    signal = voice_like(SECONDS)
    program = (
        "import numpy as np, tensorflow\n"
        "from extract.smile import smile_features\n"
        f"signal = np.load({str(tmp_path / 'signal.npy')!r})\n"
        f"np.save({str(tmp_path / 'features.npy')!r}, smile_features(signal, {RATE}, {SECONDS}, {SEGMENTS}, 'compare'))"
    )
    np.save(tmp_path / "signal.npy", signal)
    subprocess.run([sys.executable, "-c", program], check=True, env=os.environ | {"TF_CPP_MIN_LOG_LEVEL": "3"})
    expected = smile_features(signal, RATE, SECONDS, SEGMENTS, "compare")
    np.testing.assert_array_equal(np.load(tmp_path / "features.npy"), expected)
