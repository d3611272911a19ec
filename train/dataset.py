"""The cache in memory: the labelled videos of each split, read once.

The cache is read once (10,000 videos x 10 frames x 2048 float16 is about 400 MB)
and every epoch is cut from those arrays; HDF5 is never re-read while fitting.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cache.reader import CacheReader
from cache.schema import LABEL_NAMES, TRAITS
from common.errors import TraitcacheError
from train.config import AUDIO_SOURCE, DEFAULT_FEATURES, feature_source

CACHE_DATASETS = ("video_id", "face_found")


class DataError(TraitcacheError):
    """The cache holds no data that fitting can use (no labels, no training split)."""


@dataclass(frozen=True)
class CacheShape:
    """How a cache's videos are laid out in time, read once from its recorded config.

    Attributes
    ----------
    frames : int
        T, segments per video (time steps of a head).
    frames_per_segment : int
        k, stored frames per segment: a video holds T*k frames, segment-major.
    """

    frames: int
    frames_per_segment: int


@dataclass(frozen=True)
class SplitData:
    """The labelled videos of one split, as read from the cache.

    Attributes
    ----------
    video_ids : np.ndarray
        (N,) str.
    visual : np.ndarray
        (N, T*k, Dv) float16 per-frame features, segment-major: the run's visual sets
        side by side (Dv their dimensions' sum, 0 without one; face:resnet50 alone is 2048).
    audio : np.ndarray
        (N, T, Da) float32 per-segment features of the run's audio set (Da 0 without one;
        audio:pyaa is 68).
    face : np.ndarray
        (N, T*k) bool, a face was found in that frame.
    labels : np.ndarray
        (N, k) float32 scores of the run's k targets (the five traits by default;
        NaN only for unlabelled videos given to ``predict``).
    sets : dict of str to np.ndarray
        Every set read, by name (``visual`` and ``audio`` are joined from some of them).
    """

    video_ids: np.ndarray
    visual: np.ndarray
    audio: np.ndarray
    face: np.ndarray
    labels: np.ndarray
    sets: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.video_ids)

    def subset(self, rows: np.ndarray) -> SplitData:
        """The videos at ``rows`` (an index array), in that order."""
        return SplitData(
            self.video_ids[rows],
            self.visual[rows],
            self.audio[rows],
            self.face[rows],
            self.labels[rows],
            {name: values[rows] for name, values in self.sets.items()},
        )

    def reading(self, features: tuple[str, ...]) -> SplitData:
        """The same videos with ``visual`` and ``audio`` joined from ``features``, which ``sets`` must hold:
        how an ensemble gives each member the sets it was trained on."""
        visual, audio = joined_sets(self.sets, features, self.face)
        return SplitData(self.video_ids, visual, audio, self.face, self.labels, self.sets)


@dataclass(frozen=True)
class CacheData:
    """Labelled videos of every requested split, and what describes the cache.

    Attributes
    ----------
    config : dict
        The extraction config the cache was built with.
    config_hash : str
        Its hash: evaluate refuses a cache with another one.
    shape : CacheShape
        T and k.
    splits : dict of str to SplitData
        Labelled videos per split (splits with none are left out).
    unlabelled : dict of str to int
        Videos per split left out for lacking a label of one or more targets.
    content_hashes : dict of str to str
        Video id -> hash of its file's bytes, for every video of the cache: a file
        copied under another name keeps its hash.
    features : tuple of str
        The feature sets read, as ``FitOptions.features`` names them.
    """

    config: dict
    config_hash: str
    shape: CacheShape
    splits: dict[str, SplitData]
    unlabelled: dict[str, int]
    content_hashes: dict[str, str]
    features: tuple[str, ...] = DEFAULT_FEATURES


def joined_sets(
    sets: dict[str, np.ndarray], features: tuple[str, ...], face: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """A head's two inputs from the arrays of its sets.

    Parameters
    ----------
    sets : dict of str to np.ndarray
        Set name -> (N, T*k, D) visual or (N, T, D) audio arrays, holding every set of ``features``.
    features : tuple of str
        The head's sets, at most one audio set.
    face : np.ndarray
        (N, T*k) bool face flags, for the shape of the zero-width array of a source without a set.

    Returns
    -------
    (np.ndarray, np.ndarray)
        (N, T*k, Dv) float16, the visual sets side by side per frame in the order named, and
        (N, T, Da) float32, the audio set; without a visual set (N, T*k, 0), without an audio set (N, 1, 0).
    """
    visual = [sets[name] for name in features if feature_source(name) != AUDIO_SOURCE]
    audio = [sets[name] for name in features if feature_source(name) == AUDIO_SOURCE]
    return (
        # One set is used as it is: concatenating would copy the largest array in memory.
        (visual[0] if len(visual) == 1 else np.concatenate(visual, axis=-1)).astype(np.float16, copy=False)
        if visual
        else np.zeros((*face.shape, 0), np.float16),
        audio[0].astype(np.float32, copy=False) if audio else np.zeros((len(face), 1, 0), np.float32),
    )


def read_sets(reader: CacheReader, split: str, features: tuple[str, ...]) -> dict[str, np.ndarray]:
    """``video_id``, ``face_found`` and the arrays of ``features`` (by set name) of one split.

    Raises
    ------
    common.errors.CacheError
        For a set the cache does not hold, naming the ``python -m extract add`` command that adds it.
    """
    return reader.read(split, (*CACHE_DATASETS, *features))


def load_cache(
    reader: CacheReader,
    splits: tuple[str, ...] | None = None,
    targets: tuple[str, ...] = TRAITS,
    features: tuple[str, ...] = DEFAULT_FEATURES,
    head_features: tuple[str, ...] | None = None,
) -> CacheData:
    """Read the labelled videos of ``splits`` (default: all) into memory, with the labels of ``targets``.

    ``targets`` are among LABEL_NAMES (default the five traits); videos missing the
    label of any of them are left out of fitting and scoring. ``features`` are the
    set names to read; ``visual`` and ``audio`` are joined from ``head_features``
    (default ``features``), and with ``reading`` a split gives the inputs of any run trained on some of them.
    """
    head_features = features if head_features is None else head_features
    columns = [LABEL_NAMES.index(target) for target in targets]
    names = tuple(reader.splits()) if splits is None else splits
    loaded: dict[str, SplitData] = {}
    unlabelled: dict[str, int] = {}
    for name in names:
        arrays = read_sets(reader, name, features)
        sets = {set_name: arrays[set_name] for set_name in features}
        labels = reader.labels(arrays["video_id"])[:, columns]
        rows = np.flatnonzero(np.isfinite(labels).all(axis=1))
        unlabelled[name] = len(labels) - len(rows)
        if rows.size:
            split = SplitData(
                arrays["video_id"],
                *joined_sets(sets, head_features, arrays["face_found"]),
                arrays["face_found"],
                labels,
                sets,
            )
            loaded[name] = split if rows.size == len(labels) else split.subset(rows)
    shape = CacheShape(reader.frames, reader.frames_per_segment)
    hashes = {entry.video_ids[row]: entry.content_hashes[row] for entry, row in reader.index.live()}
    return CacheData(reader.config, reader.config_hash, shape, loaded, unlabelled, hashes, tuple(features))
