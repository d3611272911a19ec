"""openSMILE functionals per video segment, through the ``opensmile`` package.

Each of the T equal segments of a video (the spans today's audio features average
over, see ``extract.audio.segment_means``) gets one row: openSMILE's functionals
of the sound samples in that span. ``eGeMAPSv02`` is the field's standard voice
set; ``ComParE_2016`` is the set of the INTERSPEECH computational paralinguistics
challenges, used by BU-NKU on ChaLearn First Impressions.

openSMILE reads 16-bit samples: the ``opensmile`` package multiplies its float
input by 2^15 and truncates to int16, so int16-range samples divided by 2^15 reach
it unchanged.

openSMILE yields no functionals for less than 60 ms of sound. A shorter segment
(a very short video, or a segment past the end of a sound track shorter than the
video) is analysed on the 60 ms centred on it, moved inside the sound track, and
a sound track shorter than 60 ms is padded with silence: every row is finite.

The ``opensmile`` package (and the pandas it needs) is imported lazily.
"""

from __future__ import annotations

import ctypes
import functools
import importlib.util
import os
import sys
from pathlib import Path

import numpy as np

from extract.audio import INT16_FULL_SCALE

# Extractor name -> (opensmile.FeatureSet member, functionals per segment).
SMILE_SETS = {
    "egemaps": ("eGeMAPSv02", 88),  # 88: the extended Geneva Minimalistic Acoustic Parameter Set's functionals
    "compare": (
        "ComParE_2016",
        6373,
    ),  # 6373: ComParE 2016 functionals of its 65 low-level descriptors and their deltas
}
# openSMILE's shortest input with functionals: measured 960 samples at 16 kHz, 480 at 8 kHz
# and 2646 at 44.1 kHz, for both sets (opensmile 2.6.0); shorter gives none (NaN rows).
MINIMUM_MILLISECONDS = 60


@functools.cache
def load_library() -> ctypes.CDLL | None:
    """Load openSMILE's C library so that it binds its own symbols first: call before ``import opensmile``.

    Loaded into a process where TensorFlow already is, libSMILEapi crashed the process
    in its first run (segmentation fault; opensmile 2.6.0, TensorFlow 2.21), while
    loaded first it ran. ``RTLD_DEEPBIND`` makes it resolve its symbols in itself
    before in what TensorFlow loaded; the package's own later load of the same file
    gets this handle. A no-op where the package has loaded it already (it then came
    before TensorFlow, or TensorFlow is not loaded) or where the loader has no
    ``RTLD_DEEPBIND`` (macOS, Windows).
    """
    if "opensmile.core.lib" in sys.modules or not hasattr(os, "RTLD_DEEPBIND"):
        return None
    package = Path(importlib.util.find_spec("opensmile").origin).resolve().parent
    # The package picks its platform's folder under core/bin; a Linux wheel holds only that one.
    (library,) = package.glob("core/bin/*/libSMILEapi.so")
    return ctypes.CDLL(str(library), mode=os.RTLD_NOW | os.RTLD_DEEPBIND)


@functools.cache
def _smile(extractor: str):
    """An ``opensmile.Smile`` for one set's functionals, built once per process."""
    load_library()
    import opensmile

    return opensmile.Smile(
        feature_set=opensmile.FeatureSet[SMILE_SETS[extractor][0]], feature_level=opensmile.FeatureLevel.Functionals
    )


def segment_bounds(num_samples: int, rate: int, duration: float, segments: int) -> np.ndarray:
    """Sample spans analysed for each of T equal segments of a video.

    Parameters
    ----------
    num_samples : int
        Length of the sound track.
    rate : int
        Hz of the sound track.
    duration : float
        Seconds of video, cut into ``segments`` equal parts.
    segments : int
        T.

    Returns
    -------
    np.ndarray
        (T, 2) int64 start and end samples; segment t is
        [round(t * duration / T * rate), round((t + 1) * duration / T * rate)),
        cut at the end of the sound track, or the MINIMUM_MILLISECONDS around its
        centre, kept inside the sound track where it has that much, when shorter.
        An end may pass ``num_samples`` only when the whole track is shorter than
        MINIMUM_MILLISECONDS.
    """
    minimum = -(-MINIMUM_MILLISECONDS * rate // 1000)  # ceiling, in integers: 0.06 * 16000 rounds above 960
    edges = np.round(np.arange(segments + 1) * (duration / segments) * rate).astype(np.int64)
    starts, ends = np.minimum(edges[:-1], num_samples), np.minimum(edges[1:], num_samples)
    short = ends - starts < minimum
    widened = np.clip((starts + ends) // 2 - minimum // 2, 0, max(num_samples - minimum, 0))
    return np.column_stack([np.where(short, widened, starts), np.where(short, widened + minimum, ends)])


def smile_features(signal: np.ndarray | None, rate: int, duration: float, segments: int, extractor: str) -> np.ndarray:
    """openSMILE functionals of one video's T segments; zeros when it has no sound.

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
    extractor : str
        A key of SMILE_SETS: ``egemaps`` or ``compare``.

    Returns
    -------
    np.ndarray
        (T, D) float32, D = ``SMILE_SETS[extractor][1]``; row t equals
        ``opensmile.Smile(...).process_signal`` on the samples of
        ``segment_bounds`` row t, divided by 2^15.
    """
    if extractor not in SMILE_SETS:
        raise ValueError(f"extractor must be one of {', '.join(SMILE_SETS)}, got {extractor!r}")
    if signal is None:
        return np.zeros((segments, SMILE_SETS[extractor][1]), dtype=np.float32)
    bounds = segment_bounds(len(signal), rate, duration, segments)
    samples = np.asarray(signal, dtype=np.float32) / np.float32(INT16_FULL_SCALE)
    samples = np.pad(samples, (0, max(int(bounds[:, 1].max()) - len(samples), 0)))
    smile = _smile(extractor)
    rows = [smile.process_signal(samples[start:end], rate).to_numpy(dtype=np.float32)[0] for start, end in bounds]
    return np.stack(rows)
