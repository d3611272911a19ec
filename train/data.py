"""The cache in memory: labelled videos per split, partitions, normalisation, batches.

The cache is read once (10,000 videos x 10 frames x 2048 float16 is about 400 MB)
and every epoch is cut from those arrays; HDF5 is never re-read while fitting.
Pure numpy: importing this module does not import Keras.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from cache.reader import CacheReader
from cache.schema import TRAITS

CACHE_DATASETS = ("video_id", "face_embeddings", "audio_features", "face_found")
STD_FLOOR = 1e-6  # features varying less than this over the training split are constant: centre them, do not scale
STATISTICS_CHUNK = 256  # videos per float64 block when summing embeddings (~40 MB at T*k = 10)


class DataError(ValueError):
    """The cache holds no data that fitting can use (no labels, no training split)."""


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
        (N, 5) float32 trait scores in TRAITS order (NaN only for unlabelled videos
        given to ``predict``).
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
    frames, frames_per_segment : int
        T and k.
    splits : dict of str to SplitData
        Labelled videos per split (splits with none are left out).
    unlabelled : dict of str to int
        Videos per split left out for lacking one or more trait labels.
    """

    config: dict
    config_hash: str
    frames: int
    frames_per_segment: int
    splits: dict[str, SplitData]
    unlabelled: dict[str, int]


def load_cache(reader: CacheReader, splits: tuple[str, ...] | None = None) -> CacheData:
    """Read the labelled videos of ``splits`` (default: all) into memory.

    Videos missing any of the five trait labels are left out of fitting and scoring.
    """
    names = tuple(reader.splits()) if splits is None else splits
    loaded: dict[str, SplitData] = {}
    unlabelled: dict[str, int] = {}
    for name in names:
        arrays = reader.read(name, CACHE_DATASETS)
        labels = reader.labels(arrays["video_id"])[:, : len(TRAITS)]
        rows = np.flatnonzero(np.isfinite(labels).all(axis=1))
        unlabelled[name] = len(labels) - len(rows)
        if rows.size:
            split = SplitData(arrays["video_id"], arrays["face_embeddings"], arrays["audio_features"], arrays["face_found"], labels)
            loaded[name] = split if rows.size == len(labels) else split.subset(rows)
    return CacheData(reader.config, reader.config_hash, reader.frames, reader.frames_per_segment, loaded, unlabelled)


@dataclass(frozen=True)
class Partition:
    """Videos to fit on, to select on, and to report.

    Attributes
    ----------
    train, validation : SplitData
    others : dict of str to SplitData
        Every other labelled split, reported but never used for fitting.
    held_out : bool
        The validation videos were drawn from the training split.
    """

    train: SplitData
    validation: SplitData
    others: dict[str, SplitData]
    held_out: bool

    def named(self) -> dict[str, SplitData]:
        """Every split by its reporting name: train, validation, then the others."""
        return {"train": self.train, "validation": self.validation, **self.others}


def partition(splits: dict[str, SplitData], train_split: str, validation_split: str, validation_fraction: float, holdout_seed: int) -> Partition:
    """Choose training and validation videos.

    The split named ``train_split`` is fitted on (or the only labelled split, when
    there is just one); ``validation_split`` selects and early-stops. Without a
    labelled validation split, a seeded ``validation_fraction`` of the training
    videos is held out instead.

    Raises
    ------
    DataError
        No labelled videos, several labelled splits none of which is ``train_split``,
        or too few training videos to hold some out.
    """
    if not splits:
        raise DataError("the cache has no labelled videos; attach them with `python -m cache labels CACHE FILE` or `make features LABELS=...`")
    if train_split in splits:
        train_name = train_split
    elif len(splits) == 1:
        train_name = next(iter(splits))
    else:
        raise DataError(f"no labelled split named {train_split!r} among {', '.join(splits)}; name one with --train-split")
    train = splits[train_name]
    others = {name: split for name, split in splits.items() if name not in (train_name, validation_split)}
    if validation_split in splits and validation_split != train_name:
        return Partition(train, splits[validation_split], others, held_out=False)
    held = max(1, round(validation_fraction * len(train)))
    if len(train) - held < 1:
        raise DataError(f"split {train_name!r} has {len(train)} labelled videos: too few to hold out a validation fraction of {validation_fraction}")
    order = np.random.default_rng(holdout_seed).permutation(len(train))
    return Partition(train.subset(np.sort(order[held:])), train.subset(np.sort(order[:held])), others, held_out=True)


@dataclass(frozen=True)
class Normalization:
    """Input standardisation and label baseline, from the training split only.

    Attributes
    ----------
    visual_mean, visual_std : np.ndarray
        (2048,) float32, over frames where a face was found.
    audio_mean, audio_std : np.ndarray
        (68,) float32, over all segments.
    label_mean : np.ndarray
        (5,) float32 training-mean traits: the baseline prediction.
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
            return cls(**{name: stored[name] for name in ("visual_mean", "visual_std", "audio_mean", "audio_std", "label_mean")})


def _mean_and_std(total: np.ndarray, squares: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - mean**2, 0.0))
    return mean.astype(np.float32), np.where(std < STD_FLOOR, 1.0, std).astype(np.float32)


def fit_normalization(train: SplitData) -> Normalization:
    """Statistics of the training split.

    Parameters
    ----------
    train : SplitData
        N videos with (N, T*k, 2048) embeddings and (N, T, 68) audio.

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
        frames = block.reshape(-1, block.shape[-1])
        if not use_all_frames:
            frames = frames[train.face[start : start + STATISTICS_CHUNK].reshape(-1)]
        total += frames.sum(axis=0)
        squares += (frames**2).sum(axis=0)
        count += len(frames)
    visual_mean, visual_std = _mean_and_std(total, squares, count)
    audio = train.audio.reshape(-1, train.audio.shape[-1]).astype(np.float64)
    audio_mean, audio_std = _mean_and_std(audio.sum(axis=0), (audio**2).sum(axis=0), len(audio))
    return Normalization(visual_mean, visual_std, audio_mean, audio_std, train.labels.mean(axis=0).astype(np.float32))


def centre_frames(videos: int, frames: int, per_segment: int) -> np.ndarray:
    """(videos, T) frame indices of the middle stored frame of every segment."""
    return np.broadcast_to(np.arange(frames) * per_segment + per_segment // 2, (videos, frames))


def random_frames(rng: np.random.Generator, videos: int, frames: int, per_segment: int) -> np.ndarray:
    """(videos, T) frame indices of one randomly picked stored frame per segment."""
    return np.arange(frames) * per_segment + rng.integers(0, per_segment, size=(videos, frames))


def model_inputs(split: SplitData, rows: np.ndarray, frame_index: np.ndarray, normalization: Normalization, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Normalised head inputs for some videos.

    Parameters
    ----------
    split : SplitData
    rows : np.ndarray
        (n,) video indices into ``split``.
    frame_index : np.ndarray
        (n, T) stored-frame index per video and segment.
    normalization : Normalization
    names : tuple of str
        Which of ``visual``, ``audio``, ``face`` to build.

    Returns
    -------
    dict of str to np.ndarray
        ``visual`` (n, T, 2048) float32, standardised, zero (the training mean)
        where no face was found; ``audio`` (n, T, 68) float32 standardised;
        ``face`` (n, T, 1) float32 1.0 where a face was found.
    """
    face = split.face[rows[:, None], frame_index]
    inputs = {}
    if "visual" in names:
        visual = (split.visual[rows[:, None], frame_index].astype(np.float32) - normalization.visual_mean) / normalization.visual_std
        inputs["visual"] = np.where(face[..., None], visual, np.float32(0.0))
    if "audio" in names:
        inputs["audio"] = (split.audio[rows] - normalization.audio_mean) / normalization.audio_std
    if "face" in names:
        inputs["face"] = face[..., None].astype(np.float32)
    return inputs


def evaluation_inputs(split: SplitData, normalization: Normalization, frames: int, per_segment: int, names: tuple[str, ...], chunk: int) -> Iterator[dict[str, np.ndarray]]:
    """Head inputs for a whole split, ``chunk`` videos at a time, centre frames.

    Yields dicts as ``model_inputs`` returns, in video order.
    """
    for start in range(0, len(split), chunk):
        rows = np.arange(start, min(start + chunk, len(split)))
        yield model_inputs(split, rows, centre_frames(len(rows), frames, per_segment), normalization, names)


def training_batches(split: SplitData, normalization: Normalization, frames: int, per_segment: int, batch_size: int, seed: int, names: tuple[str, ...]) -> Iterator[tuple[dict[str, np.ndarray], np.ndarray]]:
    """Endless (inputs, labels) batches, epoch after epoch.

    Each epoch shuffles the videos and, when k > 1, picks one stored frame per
    segment at random: augmentation that costs no decoding. Epoch e draws from a
    generator seeded with (seed, e), so the stream depends on nothing else; a
    single stream (not a per-epoch callback) keeps it exact under prefetching.
    The last batch of an epoch may be smaller.
    """
    for epoch in itertools.count():
        rng = np.random.default_rng([seed, epoch])
        order = rng.permutation(len(split))
        if per_segment > 1:
            frame_index = random_frames(rng, len(split), frames, per_segment)
        else:
            frame_index = centre_frames(len(split), frames, per_segment)
        for start in range(0, len(split), batch_size):
            rows = order[start : start + batch_size]
            yield model_inputs(split, rows, frame_index[rows], normalization, names), split.labels[rows]
