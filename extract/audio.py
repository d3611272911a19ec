"""Short-term audio features (pyAudioAnalysis), aligned to the T video segments."""

from __future__ import annotations

import numpy as np
from pyAudioAnalysis import ShortTermFeatures

from cache.schema import AUDIO_DIM


def short_term_features(signal: np.ndarray, rate: int, window: float, step: float) -> np.ndarray:
    """pyAudioAnalysis short-term features with deltas.

    Parameters
    ----------
    signal : np.ndarray
        (num_samples,) mono samples in int16 range (pyAudioAnalysis scales by 2^-15).
    rate : int
        Hz.
    window, step : float
        Seconds.

    Returns
    -------
    np.ndarray
        (num_windows, 68) float64; a signal shorter than one window is zero-padded to one.
    """
    window_samples = round(window * rate)
    step_samples = round(step * rate)
    if len(signal) < window_samples:
        signal = np.pad(signal, (0, window_samples - len(signal)))
    features, _ = ShortTermFeatures.feature_extraction(np.asarray(signal, dtype=np.float64), rate, window_samples, step_samples, deltas=True)
    return features.T


def segment_means(features: np.ndarray, window: float, step: float, duration: float, segments: int) -> np.ndarray:
    """Average the windows whose centre falls in each of T equal segments.

    Parameters
    ----------
    features : np.ndarray
        (num_windows, 68), window i spanning [i*step, i*step + window) seconds.
    duration : float
        Seconds of video, cut into ``segments`` equal parts.

    Returns
    -------
    np.ndarray
        (T, 68) float32; a segment with no window centre takes the nearest window.
    """
    centres = np.arange(len(features)) * step + window / 2.0
    segment_of_window = np.floor(centres / (duration / segments)).astype(int)
    segment_centres = (np.arange(segments) + 0.5) * (duration / segments)
    result = np.empty((segments, features.shape[1]), dtype=np.float32)
    for segment in range(segments):
        members = segment_of_window == segment
        if members.any():
            result[segment] = features[members].mean(axis=0)
        else:
            result[segment] = features[np.abs(centres - segment_centres[segment]).argmin()]
    return result


def segment_windows(signal: np.ndarray, rate: int, duration: float, segments: int) -> np.ndarray:
    """The original project's variant: one analysis window per segment.

    Returns
    -------
    np.ndarray
        (T, 68) float32; when the sound is shorter than the video the last
        window is repeated.
    """
    segment_seconds = duration / segments
    features = short_term_features(signal, rate, segment_seconds, segment_seconds)[:segments]
    missing = segments - len(features)
    return np.concatenate([features, np.repeat(features[-1:], missing, axis=0)]).astype(np.float32)


def audio_features(signal: np.ndarray | None, rate: int, duration: float, segments: int, window: float, step: float, mode: str) -> np.ndarray:
    """(T, 68) float32 audio features for one video; zeros when it has no sound."""
    if signal is None:
        return np.zeros((segments, AUDIO_DIM), dtype=np.float32)
    if mode == "window":
        return segment_windows(signal, rate, duration, segments)
    return segment_means(short_term_features(signal, rate, window, step), window, step, duration, segments)
