"""The cache in memory: the labelled videos of each split, read once.

The cache is read once (10,000 videos x 10 frames x 2048 float16 is about 400 MB)
and every epoch is cut from those arrays; HDF5 is never re-read while fitting.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cache.reader import CacheReader
from cache.schema import LABEL_NAMES, TRAITS
from common.errors import TraitcacheError

CACHE_DATASETS = ("video_id", "face_embeddings", "audio_features", "face_found")


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
        (N, T*k, 2048) float16 face embeddings, segment-major.
    audio : np.ndarray
        (N, T, 68) float32 audio features.
    face : np.ndarray
        (N, T*k) bool, a face was found in that frame.
    labels : np.ndarray
        (N, k) float32 scores of the run's k targets (the five traits by default;
        NaN only for unlabelled videos given to ``predict``).
    """

    video_ids: np.ndarray
    visual: np.ndarray
    audio: np.ndarray
    face: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.video_ids)

    def subset(self, rows: np.ndarray) -> SplitData:
        """The videos at ``rows`` (an index array), in that order."""
        return SplitData(self.video_ids[rows], self.visual[rows], self.audio[rows], self.face[rows], self.labels[rows])


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
    """

    config: dict
    config_hash: str
    shape: CacheShape
    splits: dict[str, SplitData]
    unlabelled: dict[str, int]
    content_hashes: dict[str, str]


def load_cache(
    reader: CacheReader, splits: tuple[str, ...] | None = None, targets: tuple[str, ...] = TRAITS
) -> CacheData:
    """Read the labelled videos of ``splits`` (default: all) into memory, with the labels of ``targets``.

    ``targets`` are among LABEL_NAMES (default the five traits); videos missing the
    label of any of them are left out of fitting and scoring.
    """
    columns = [LABEL_NAMES.index(target) for target in targets]
    names = tuple(reader.splits()) if splits is None else splits
    loaded: dict[str, SplitData] = {}
    unlabelled: dict[str, int] = {}
    for name in names:
        arrays = reader.read(name, CACHE_DATASETS)
        labels = reader.labels(arrays["video_id"])[:, columns]
        rows = np.flatnonzero(np.isfinite(labels).all(axis=1))
        unlabelled[name] = len(labels) - len(rows)
        if rows.size:
            split = SplitData(
                arrays["video_id"], arrays["face_embeddings"], arrays["audio_features"], arrays["face_found"], labels
            )
            loaded[name] = split if rows.size == len(labels) else split.subset(rows)
    shape = CacheShape(reader.frames, reader.frames_per_segment)
    hashes = {entry.video_ids[row]: entry.content_hashes[row] for entry, row in reader.index.live()}
    return CacheData(reader.config, reader.config_hash, shape, loaded, unlabelled, hashes)
