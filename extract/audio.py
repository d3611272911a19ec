"""Short-term audio features (pyAudioAnalysis' 68), aligned to the T video segments.

pyAudioAnalysis' ``ShortTermFeatures.feature_extraction`` computes its features
one frame at a time in Python; :func:`frame_features` computes the same 68
features for many frames at once with numpy. Only the one-off set-up (the MFCC
filter bank and the chroma bin map) comes from pyAudioAnalysis itself, so that
those tables are exactly its own. :func:`audio_features` works through the
frames a batch at a time and keeps only running sums per segment, so that memory
beyond the int16 sound track stays bounded however long the recording.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import scipy.fft
from pyAudioAnalysis import ShortTermFeatures

from cache.schema import AUDIO_DIM
from common.errors import OptionError
from common.options import option

AUDIO_MODES = ("mean", "window")  # mean of short windows per segment, or one window per segment (original project)

INT16_FULL_SCALE = 2.0**15  # pyAudioAnalysis divides samples by this: it expects int16-range input
NORMALISE_GUARD = 1e-10  # added to the peak amplitude before dividing, as pyAudioAnalysis does, so silence stays 0
GUARD = sys.float_info.epsilon  # pyAudioAnalysis' guard against division by zero and log(0)
ENTROPY_BLOCKS = 10  # sub-blocks per frame in pyAudioAnalysis' energy entropy and spectral entropy
ROLLOFF_FRACTION = 0.90  # share of the spectral energy below pyAudioAnalysis' roll-off bin
MFCC_COUNT = 13  # cepstral coefficients kept (of the 40 filter-bank channels)
CHROMA_CLASSES = 12  # semitones per octave
# Samples in the frames transformed together (655 frames of 50 ms at 16 kHz): the
# batch's temporaries stay ~12 MB however long the recording; measured ~25 MB at 2^20,
# which was no faster within this machine's noise.
SAMPLES_PER_BATCH = 2**19


def short_term_features(signal: np.ndarray, rate: int, window: float, step: float) -> np.ndarray:
    """pyAudioAnalysis short-term features with deltas.

    Parameters
    ----------
    signal : np.ndarray
        (num_samples,) mono samples in int16 range (pyAudioAnalysis scales by 2^-15),
        int16 or float.
    rate : int
        Hz.
    window, step : float
        Seconds.

    Returns
    -------
    np.ndarray
        (num_windows, 68) float64; a signal shorter than one window is zero-padded to one.
    """
    return np.concatenate(list(short_term_batches(signal, rate, window, step)))


def short_term_batches(signal: np.ndarray, rate: int, window: float, step: float) -> Iterator[np.ndarray]:
    """`short_term_features` a batch of consecutive windows at a time, so that memory stays bounded.

    Yields
    ------
    np.ndarray
        (num_batch_windows, 68) float64, the batches in order.
    """
    window_samples = round(window * rate)
    if len(signal) < window_samples:
        signal = np.pad(signal, (0, window_samples - len(signal)))
    return feature_batches(signal, rate, window_samples, round(step * rate))


def frame_features(
    signal: np.ndarray, rate: int, window_samples: int, step_samples: int, frames_per_batch: int | None = None
) -> np.ndarray:
    """pyAudioAnalysis' ``feature_extraction(..., deltas=True)``, vectorised and transposed.

    Parameters
    ----------
    signal : np.ndarray
        (num_samples,) mono samples in int16 range, num_samples >= window_samples.
    rate : int
        Hz.
    window_samples, step_samples : int
        Frame length and hop in samples; frame i covers samples
        [i * step_samples, i * step_samples + window_samples).
    frames_per_batch : int, optional
        Frames transformed together; it bounds memory and does not change the
        result. By default as many as fit in ``SAMPLES_PER_BATCH``.

    Returns
    -------
    np.ndarray
        (num_windows, 68) float64: 34 features per frame (zcr, energy,
        energy_entropy, spectral_centroid, spectral_spread, spectral_entropy,
        spectral_flux, spectral_rolloff, 13 mfcc, 12 chroma, chroma_std), then
        their differences from the previous frame (zero for the first frame).
        num_windows = (num_samples - window_samples) // step_samples + 1.

    Raises
    ------
    ValueError
        When the window is too short for pyAudioAnalysis' chroma map (its
        highest bin's pitch class index must stay below window_samples // 2:
        about 198 samples at 16 kHz, 234 at 44.1 kHz); pyAudioAnalysis itself
        fails there too.
    """
    return np.concatenate(list(feature_batches(signal, rate, window_samples, step_samples, frames_per_batch)))


def feature_batches(
    signal: np.ndarray, rate: int, window_samples: int, step_samples: int, frames_per_batch: int | None = None
) -> Iterator[np.ndarray]:
    """`frame_features` a batch of consecutive frames at a time.

    pyAudioAnalysis first removes the signal's mean and divides by its peak; both
    are computed here first, in one pass that copies nothing, and each batch is
    then normalised on its own, so that no signal-length float copy exists.

    Yields
    ------
    np.ndarray
        (num_batch_frames, 68) float64, the batches in order; together they are
        `frame_features`' rows.
    """
    spectrum_bins = window_samples // 2
    filter_bank, _ = ShortTermFeatures.mfcc_filter_banks(rate, spectrum_bins)
    mel = _nonzero_rows(filter_bank.T)
    chroma = _nonzero_rows(_chroma_weights(spectrum_bins, rate))
    offset, peak = _normalisation(signal)
    num_frames = (len(signal) - window_samples) // step_samples + 1
    frames_per_batch = frames_per_batch or max(1, SAMPLES_PER_BATCH // window_samples)
    previous = None  # the last frame's 34 features, for the first delta of the next batch
    for start in range(0, num_frames, frames_per_batch):
        stop = min(start + frames_per_batch, num_frames)
        # Each later batch starts one frame early: spectral flux needs the previous frame's spectrum.
        first = max(start - 1, 0)
        samples = signal[first * step_samples : (stop - 1) * step_samples + window_samples]
        # The same operations as pyAudioAnalysis' on the whole signal, so each sample gets the same value.
        normalised = (samples / INT16_FULL_SCALE - offset) / (peak + NORMALISE_GUARD)
        frames = np.lib.stride_tricks.sliding_window_view(normalised, window_samples)[::step_samples]
        time_features = _time_features(normalised[(start - first) * step_samples :], window_samples, step_samples)
        features = np.column_stack([time_features, _spectral_features(frames, rate, mel, chroma)[start - first :]])
        deltas = np.diff(features, axis=0, prepend=features[:1] if previous is None else previous)
        previous = features[-1:]
        yield np.concatenate([features, deltas], axis=1)


def _normalisation(signal: np.ndarray) -> tuple[float, float]:
    """pyAudioAnalysis' DC offset and peak of ``signal / 2^15``: normalised = (signal / 2^15 - offset) / (peak + guard).

    Parameters
    ----------
    signal : np.ndarray
        (num_samples,) samples in int16 range.

    Returns
    -------
    offset, peak : float
        The mean of the scaled signal, and the largest absolute value of the
        scaled signal minus it.
    """
    if np.issubdtype(signal.dtype, np.integer):
        # Integer samples sum exactly (int64 holds 2^48 int16 samples), the mean then correctly rounded.
        offset = int(np.sum(signal, dtype=np.int64)) / len(signal) / INT16_FULL_SCALE
    else:
        # Scaling by a power of two commutes with rounding: the mean of the scaled signal, bit for bit.
        offset = float(np.mean(signal, dtype=np.float64)) / INT16_FULL_SCALE
    # The largest distance from the offset lies at one of the extremes.
    peak = max(
        abs(float(signal.max()) / INT16_FULL_SCALE - offset), abs(float(signal.min()) / INT16_FULL_SCALE - offset)
    )
    return offset, peak


def _time_features(normalised: np.ndarray, window_samples: int, step_samples: int) -> np.ndarray:
    """Zero-crossing rate, energy and energy entropy of every frame.

    Parameters
    ----------
    normalised : np.ndarray
        (num_samples,) the normalised signal.

    Returns
    -------
    np.ndarray
        (num_windows, 3) float64.
    """
    # Frames overlap, so squares and sign changes are computed once on the whole signal.
    squares = np.lib.stride_tricks.sliding_window_view(normalised**2, window_samples)[::step_samples]
    sign_changes = np.concatenate([[0.0], np.cumsum(np.abs(np.diff(np.sign(normalised))))])
    starts = np.arange(len(squares)) * step_samples
    # Integer-valued sums, so these differences are exact.
    crossings = (sign_changes[starts + window_samples - 1] - sign_changes[starts]) / 2
    zero_crossing_rate = crossings / (window_samples - 1.0)
    energy = np.sum(squares, axis=1) / window_samples
    return np.column_stack([zero_crossing_rate, energy, _block_entropy(squares)])


def _chroma_weights(spectrum_bins: int, rate: int) -> np.ndarray:
    """pyAudioAnalysis' chroma map as a (spectrum_bins, 12) matrix: chroma = power @ weights / total power.

    pyAudioAnalysis scatters each frame's power into a spectrum_bins-long
    vector at each bin's pitch class index (a repeated index keeps the last
    bin's power; a negative one wraps to the end, as numpy indexing does),
    divides element j by the bin count of the class that bin j itself has, and
    sums that vector's elements by j modulo 12. The same scatter, done once on
    bin numbers, says which bin lands at each j; each bin lands at most once.

    Returns
    -------
    np.ndarray
        (spectrum_bins, 12) float64; row b holds 1 / divisor in the column of
        the position bin b lands at, and is zero when it lands nowhere.
    """
    pitch_classes, bins_per_class = ShortTermFeatures.chroma_features_init(spectrum_bins, rate)
    if pitch_classes.max() >= spectrum_bins:
        raise ValueError(
            f"a window of {2 * spectrum_bins} samples is too short for pyAudioAnalysis' chroma features at {rate} Hz"
        )
    source_bins = np.full(spectrum_bins, -1)
    source_bins[pitch_classes] = np.arange(spectrum_bins)
    positions = np.flatnonzero(source_bins >= 0)
    weights = np.zeros((spectrum_bins, CHROMA_CLASSES))
    weights[source_bins[positions], positions % CHROMA_CLASSES] = 1.0 / bins_per_class[pitch_classes][positions]
    return weights


def _nonzero_rows(weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The rows of a (spectrum_bins, outputs) weight matrix that are not all zero.

    Most bins feed no MFCC filter (pyAudioAnalysis' bank ends near 6.4 kHz on
    its frequency axis, about bin 160 of 1102 at 44.1 kHz) and most feed no
    chroma class, so multiplying only these rows skips exact zeros.

    Returns
    -------
    bins : np.ndarray
        (num_used,) int indices of those rows.
    rows : np.ndarray
        (num_used, outputs) float64, the rows themselves.
    """
    bins = np.flatnonzero(weights.any(axis=1))
    return bins, weights[bins]


def _spectral_features(
    frames: np.ndarray, rate: int, mel: tuple[np.ndarray, np.ndarray], chroma: tuple[np.ndarray, np.ndarray]
) -> np.ndarray:
    """The 31 spectrum features of consecutive frames, spectral flux of the first taken as 0.

    Parameters
    ----------
    frames : np.ndarray
        (num_frames, window_samples) normalised samples.
    mel, chroma : tuple of np.ndarray
        :func:`_nonzero_rows` of pyAudioAnalysis' (40, window_samples // 2)
        MFCC filter bank, transposed, and of :func:`_chroma_weights`.

    Returns
    -------
    np.ndarray
        (num_frames, 31) float64: spectral centroid, spread, entropy, flux,
        rolloff, 13 MFCCs, 12 chroma and chroma_std.
    """
    spectrum_bins = frames.shape[1] // 2
    # The first half of the full FFT, divided by the number of bins kept, as pyAudioAnalysis does.
    # scipy's rfft runs the same real transform as its fftpack.fft, so these magnitudes equal
    # pyAudioAnalysis' bit for bit; the roll-off, a threshold on them, relies on that.
    magnitude = np.abs(scipy.fft.rfft(frames, axis=1)[:, :spectrum_bins]) / spectrum_bins
    power = magnitude**2
    centroid, spread = _spectral_centroid_spread(magnitude, rate)
    columns = [centroid, spread, _block_entropy(power), _spectral_flux(magnitude), _spectral_rolloff(power)]
    return np.column_stack(columns + [_mfcc(magnitude, *mel), _chroma(power, *chroma)])


def _block_entropy(squares: np.ndarray) -> np.ndarray:
    """Entropy (bits) of the shares of each row's energy held by ENTROPY_BLOCKS equal consecutive blocks.

    Parameters
    ----------
    squares : np.ndarray
        (num_frames, length) squared values; the length % ENTROPY_BLOCKS
        trailing ones count in the row's energy but in no block, as in
        pyAudioAnalysis.

    Returns
    -------
    np.ndarray
        (num_frames,)
    """
    total = np.sum(squares, axis=1, keepdims=True)
    block_length = squares.shape[1] // ENTROPY_BLOCKS
    blocks = squares[:, : ENTROPY_BLOCKS * block_length].reshape(len(squares), ENTROPY_BLOCKS, block_length)
    shares = np.sum(blocks, axis=2) / (total + GUARD)
    return -np.sum(shares * np.log2(shares + GUARD), axis=1)


def _spectral_centroid_spread(magnitude: np.ndarray, rate: int) -> tuple[np.ndarray, np.ndarray]:
    """Centroid and spread of each spectrum, as fractions of the Nyquist frequency.

    Parameters
    ----------
    magnitude : np.ndarray
        (num_frames, spectrum_bins)

    Returns
    -------
    centroid, spread : np.ndarray
        (num_frames,) each.
    """
    nyquist = rate / 2.0
    # pyAudioAnalysis puts bin k (from 0) at (k + 1) * nyquist / spectrum_bins Hz.
    frequencies = np.arange(1, magnitude.shape[1] + 1) * (rate / (2.0 * magnitude.shape[1]))
    peak = magnitude.max(axis=1, keepdims=True)
    weights = magnitude / np.where(peak == 0, GUARD, peak)
    denominator = np.sum(weights, axis=1) + GUARD
    centroid = np.sum(frequencies * weights, axis=1) / denominator
    spread = np.sqrt(np.sum((frequencies - centroid[:, None]) ** 2 * weights, axis=1) / denominator)
    return centroid / nyquist, spread / nyquist


def _spectral_flux(magnitude: np.ndarray) -> np.ndarray:
    """Squared distance between consecutive sum-normalised spectra; (num_frames,), 0 for the first frame."""
    shares = magnitude / np.sum(magnitude + GUARD, axis=1, keepdims=True)
    return np.concatenate([[0.0], np.sum(np.diff(shares, axis=0) ** 2, axis=1)])


def _spectral_rolloff(power: np.ndarray) -> np.ndarray:
    """First bin, as a fraction of spectrum_bins, where the cumulative power passes ROLLOFF_FRACTION of the total.

    Parameters
    ----------
    power : np.ndarray
        (num_frames, spectrum_bins) squared magnitudes.

    Returns
    -------
    np.ndarray
        (num_frames,)
    """
    threshold = ROLLOFF_FRACTION * np.sum(power, axis=1, keepdims=True)
    passed = np.cumsum(power, axis=1) + GUARD > threshold
    # A row that never passes (NaN input) gets 0, as in pyAudioAnalysis.
    return np.where(passed.any(axis=1), passed.argmax(axis=1) / float(power.shape[1]), 0.0)


def _mfcc(magnitude: np.ndarray, bins: np.ndarray, filters: np.ndarray) -> np.ndarray:
    """(num_frames, MFCC_COUNT) orthonormal DCT-II of the log10 filter-bank magnitudes.

    Parameters
    ----------
    magnitude : np.ndarray
        (num_frames, spectrum_bins)
    bins, filters : np.ndarray
        (num_used,) and (num_used, 40): :func:`_nonzero_rows` of the transposed filter bank.
    """
    log_bank = np.log10(magnitude[:, bins] @ filters + GUARD)
    return scipy.fft.dct(log_bank, type=2, norm="ortho", axis=1)[:, :MFCC_COUNT]


def _chroma(power: np.ndarray, bins: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(num_frames, 13): the 12 chroma shares of each frame's power, then their standard deviation.

    Parameters
    ----------
    power : np.ndarray
        (num_frames, spectrum_bins) squared magnitudes.
    bins, weights : np.ndarray
        (num_used,) and (num_used, 12): :func:`_nonzero_rows` of :func:`_chroma_weights`.
    """
    total = np.sum(power, axis=1, keepdims=True)
    chroma = (power[:, bins] @ weights) / np.where(total == 0, GUARD, total)
    return np.column_stack([chroma, chroma.std(axis=1)])


def segment_means(
    batches: Iterable[np.ndarray], window: float, step: float, duration: float, segments: int
) -> np.ndarray:
    """Average the windows whose centre falls in each of T equal segments, one batch of windows at a time.

    Parameters
    ----------
    batches : iterable of np.ndarray
        Consecutive (num_batch_windows, 68) batches of windows (`short_term_batches`,
        or ``[features]`` for one array); window i overall spans
        [i*step, i*step + window) seconds.
    duration : float
        Seconds of video, cut into ``segments`` equal parts.

    Returns
    -------
    np.ndarray
        (T, 68) float32; a segment with no window centre takes the nearest window.
    """
    length = duration / segments
    segment_centres = (np.arange(segments) + 0.5) * length
    sums, counts = np.zeros((segments, AUDIO_DIM)), np.zeros(segments, dtype=np.int64)
    nearest, nearest_distance = np.zeros((segments, AUDIO_DIM)), np.full(segments, np.inf)
    offset = 0
    for batch in batches:
        centres = np.arange(offset, offset + len(batch)) * step + window / 2.0
        segment_of_window = np.floor(centres / length).astype(int)
        for segment in np.unique(segment_of_window[(segment_of_window >= 0) & (segment_of_window < segments)]):
            members = segment_of_window == segment
            sums[segment] += batch[members].sum(axis=0)
            counts[segment] += members.sum()
        # For segments no centre falls in: the nearest window, the earliest of equals.
        distances = np.abs(centres[:, None] - segment_centres[None, :])
        closest = distances.argmin(axis=0)
        closer = distances[closest, np.arange(segments)] < nearest_distance
        nearest_distance[closer] = distances[closest[closer], np.flatnonzero(closer)]
        nearest[closer] = batch[closest[closer]]
        offset += len(batch)
    filled = counts > 0
    return np.where(filled[:, None], sums / np.maximum(counts, 1)[:, None], nearest).astype(np.float32)


def segment_windows(signal: np.ndarray, rate: int, duration: float, segments: int) -> np.ndarray:
    """The original project's variant: one analysis window per segment.

    Returns
    -------
    np.ndarray
        (T, 68) float32; when the sound is shorter than the video the last
        window is repeated.
    """
    segment_seconds = duration / segments
    collected, count = [], 0
    # Only the first T windows are used: the rest of a longer sound track is not analysed.
    for batch in short_term_batches(signal, rate, segment_seconds, segment_seconds):
        collected.append(batch[: segments - count])
        count += len(collected[-1])
        if count == segments:
            break
    features = np.concatenate(collected)
    missing = segments - len(features)
    return np.concatenate([features, np.repeat(features[-1:], missing, axis=0)]).astype(np.float32)


@dataclass(frozen=True)
class AudioOptions:
    """How a video's sound becomes T rows of features (pyAudioAnalysis short-term windows)."""

    audio_window: float = option(0.050, "Seconds per short-term audio window.", metavar="SECONDS")
    audio_step: float = option(0.025, "Seconds between audio windows.", metavar="SECONDS")
    audio_mode: str = option(
        "mean",
        "mean (of windows per segment) | window (one window per segment, as the original project).",
        metavar="MODE",
    )

    def __post_init__(self):
        for name in ("audio_window", "audio_step"):
            if not getattr(self, name) > 0.0:
                raise OptionError(name, f"must be positive seconds, got {getattr(self, name)}")
        if self.audio_mode not in AUDIO_MODES:
            raise OptionError("audio_mode", f"must be one of {AUDIO_MODES}, got {self.audio_mode!r}")


def audio_features(
    signal: np.ndarray | None, rate: int, duration: float, segments: int, options: AudioOptions
) -> np.ndarray:
    """Audio features of one video's T segments; zeros when it has no sound.

    Memory beyond ``signal`` stays bounded however long the recording: the
    analysis windows are computed and averaged a batch at a time.

    Parameters
    ----------
    signal : np.ndarray or None
        (num_samples,) mono samples in int16 range, None without a sound track.
    rate : int
        Hz of ``signal``.
    duration : float
        Seconds of video, cut into ``segments`` equal parts.
    segments : int
        T.
    options : AudioOptions
        Windows and how they are gathered per segment.

    Returns
    -------
    np.ndarray
        (T, 68) float32.
    """
    if signal is None:
        return np.zeros((segments, AUDIO_DIM), dtype=np.float32)
    if options.audio_mode == "window":
        return segment_windows(signal, rate, duration, segments)
    window, step = options.audio_window, options.audio_step
    return segment_means(short_term_batches(signal, rate, window, step), window, step, duration, segments)
