"""Input standardisation and the label baseline, fitted on the training split only.

``standardize`` is the one standardisation of head inputs: the numpy batches and
the tf.data batches both call it, so they cannot drift apart.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType

import numpy as np

from train.dataset import SplitData

STD_FLOOR = 1e-6  # features varying less than this over the training split are constant: centre them, do not scale
STATISTICS_CHUNK = 256  # videos per float64 block when summing embeddings (~40 MB at T*k = 10)


@dataclass(frozen=True)
class Normalization:
    """Input standardisation and label baseline, from the training split only.

    Attributes
    ----------
    visual_mean, visual_std : np.ndarray
        (Dv,) float32, over frames where a face was found.
    audio_mean, audio_std : np.ndarray
        (Da,) float32, over all segments.
    label_mean : np.ndarray
        (k,) float32 training-mean targets: the baseline prediction.
    """

    visual_mean: np.ndarray
    visual_std: np.ndarray
    audio_mean: np.ndarray
    audio_std: np.ndarray
    label_mean: np.ndarray

    def save(self, path: Path) -> None:
        np.savez(path, **asdict(self))

    @classmethod
    def load(cls, path: Path) -> Normalization:
        with np.load(path, allow_pickle=False) as stored:
            return cls(
                **{
                    name: stored[name]
                    for name in ("visual_mean", "visual_std", "audio_mean", "audio_std", "label_mean")
                }
            )


def _mean_and_std(total: np.ndarray, squares: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - mean**2, 0.0))
    return mean.astype(np.float32), np.where(std < STD_FLOOR, 1.0, std).astype(np.float32)


def fit_normalization(train: SplitData) -> Normalization:
    """Statistics of the training split.

    Parameters
    ----------
    train : SplitData
        N videos with (N, T*k, Dv) visual and (N, T, Da) audio features (either width may be 0).

    Returns
    -------
    Normalization
        Visual statistics over face frames (all frames when no face was ever
        found); a feature with a standard deviation under STD_FLOOR gets 1.
    """
    use_all_frames = not train.face.any()
    total = np.zeros(train.visual.shape[-1])
    squares = np.zeros(train.visual.shape[-1])
    count = 0
    for start in range(0, len(train), STATISTICS_CHUNK):
        block = train.visual[start : start + STATISTICS_CHUNK].astype(np.float64)
        # Sizes spelled out: a run without a visual set has width 0, where -1 cannot be inferred.
        frames = block.reshape(block.shape[0] * block.shape[1], block.shape[-1])
        if not use_all_frames:
            frames = frames[train.face[start : start + STATISTICS_CHUNK].reshape(-1)]
        total += frames.sum(axis=0)
        squares += (frames**2).sum(axis=0)
        count += len(frames)
    visual_mean, visual_std = _mean_and_std(total, squares, count)
    audio = train.audio.reshape(train.audio.shape[0] * train.audio.shape[1], train.audio.shape[-1]).astype(np.float64)
    audio_mean, audio_std = _mean_and_std(audio.sum(axis=0), (audio**2).sum(axis=0), len(audio))
    return Normalization(visual_mean, visual_std, audio_mean, audio_std, train.labels.mean(axis=0).astype(np.float32))


def standardize(visual, audio, found, normalization: Normalization, names: tuple[str, ...], xp: ModuleType = np):
    """Head inputs from the gathered features of some videos, in float32.

    Written with operations that numpy and ``tensorflow.experimental.numpy`` share,
    so that the numpy batches and the tf.data batches are the same arithmetic.

    Parameters
    ----------
    visual : array or None
        (n, T, Dv) float16 visual features of the picked frames; None unless
        ``visual`` is in ``names``.
    audio : array or None
        (n, T, Da) float32 audio features; None unless ``audio`` is in ``names``.
    found : array
        (n, T) bool, a face was found in the picked frame.
    normalization : Normalization
    names : tuple of str
        Which of ``visual``, ``audio``, ``face`` to build.
    xp : module
        ``numpy`` for numpy arrays, ``tensorflow.experimental.numpy`` for tensors.

    Returns
    -------
    dict of str to array
        ``visual`` (n, T, Dv) float32, standardised, zero (the training mean)
        where no face was found; ``audio`` (n, T, Da) float32 standardised;
        ``face`` (n, T, 1) float32 1.0 where a face was found.
    """
    inputs = {}
    if "visual" in names:
        standardised = (xp.asarray(visual, dtype=xp.float32) - normalization.visual_mean) / normalization.visual_std
        inputs["visual"] = xp.where(found[..., None], standardised, xp.float32(0.0))
    if "audio" in names:
        inputs["audio"] = (xp.asarray(audio, dtype=xp.float32) - normalization.audio_mean) / normalization.audio_std
    if "face" in names:
        inputs["face"] = xp.asarray(found[..., None], dtype=xp.float32)
    return inputs
