"""The cache in memory: labelled videos per split, partitions, normalisation, batches.

The cache is read once (10,000 videos x 10 frames x 2048 float16 is about 400 MB)
and every epoch is cut from those arrays; HDF5 is never re-read while fitting.
Pure numpy at import: only ``training_dataset`` imports TensorFlow, when called.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from cache.errors import OptionError, TraitcacheError
from cache.manifest import plural
from cache.reader import CacheReader
from cache.schema import LABEL_NAMES, TRAITS
from train.config import TRAIN_SPLIT, VALIDATION_SPLIT, FitOptions

CACHE_DATASETS = ("video_id", "face_embeddings", "audio_features", "face_found")
STD_FLOOR = 1e-6  # features varying less than this over the training split are constant: centre them, do not scale
STATISTICS_CHUNK = 256  # videos per float64 block when summing embeddings (~40 MB at T*k = 10)


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


HOLDOUT_SPLIT = "holdout"  # reporting name of the training videos held out for selection


class SplitNameError(OptionError, DataError):
    """A split named in the options is not among the cache's (labelled) splits."""


def source_ids(video_ids: np.ndarray, delimiter: str) -> np.ndarray:
    """(N,) str: each video's source, its id up to the first ``delimiter``.

    ChaLearn's ``_01AyUz9J9I.002.mp4`` is clip 2 of the YouTube video
    ``_01AyUz9J9I``. With an empty ``delimiter`` every video is its own source.
    """
    if not delimiter:
        return np.asarray(video_ids, dtype=str)
    return np.array([str(video_id).split(delimiter, 1)[0] for video_id in video_ids], dtype=str)


def count_sources(video_ids: np.ndarray, delimiter: str) -> int:
    """How many distinct source videos ``video_ids`` come from (see ``source_ids``)."""
    return len(np.unique(source_ids(video_ids, delimiter)))


def resolve_splits(
    available: list[str], train_split: str, validation_split: str, kind: str = "labelled split"
) -> tuple[str, str | None]:
    """Which split to fit on and which to select on.

    Parameters
    ----------
    available : list of str
        Split names to choose from.
    train_split, validation_split : str
        The names asked for.
    kind : str
        What ``available`` holds, for the error message.

    Returns
    -------
    (str, str or None)
        The training split, and the selection split or None when a share of the
        training videos is to be held out instead.

    Raises
    ------
    SplitNameError
        A name that is not available, unless it is the default: without a ``train``
        split the only one is fitted on, and without a ``validation`` split (or when
        it is the training split) a share of the training videos is held out.
    """
    listed = ", ".join(sorted(available)) or "none"
    if train_split in available:
        train_name = train_split
    elif train_split == TRAIN_SPLIT and len(available) == 1:
        train_name = available[0]
    else:
        raise SplitNameError("train_split", f"{train_split!r} names no {kind}; the cache's {kind}s are: {listed}")
    if validation_split in available and validation_split != train_name:
        return train_name, validation_split
    if validation_split == VALIDATION_SPLIT:
        return train_name, None
    if validation_split == train_name:
        raise SplitNameError(
            "validation_split",
            f"{validation_split!r} is also the training split; name another of: {listed}, or leave it out to hold out a share of {train_name!r}",
        )
    raise SplitNameError("validation_split", f"{validation_split!r} names no {kind}; the cache's {kind}s are: {listed}")


def holdout_rows(sources: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Draw a seeded share of the source videos; every clip of a source goes with it.

    Parameters
    ----------
    sources : np.ndarray
        (N,) str source of each video (``source_ids``).
    fraction : float
        Share of the distinct sources to hold out (at least one, never all).
    seed : int

    Returns
    -------
    (np.ndarray, np.ndarray)
        Sorted row indices to fit on and to hold out.

    Raises
    ------
    DataError
        Fewer than two sources.
    """
    unique, source_of_row = np.unique(sources, return_inverse=True)
    held = max(1, round(fraction * len(unique)))
    if len(unique) - held < 1:
        raise DataError(
            f"{plural(len(sources), 'training video')} from {plural(len(unique), 'source video')}: too few to hold out a validation fraction of {fraction}; add videos or name a validation split"
        )
    chosen = np.random.default_rng(seed).permutation(len(unique))[:held]
    held_out = np.isin(source_of_row, chosen)
    return np.flatnonzero(~held_out), np.flatnonzero(held_out)


@dataclass(frozen=True)
class Partition:
    """Videos to fit on, to select on, and to report, under their split names.

    Attributes
    ----------
    train_name : str
        The split fitted on (all of it, or what the hold-out left).
    train : SplitData
    selection_name : str
        The split that selects the best epoch and early-stops: a cache split, or
        HOLDOUT_SPLIT.
    selection : SplitData
    others : dict of str to SplitData
        Every other labelled split, reported but never used for fitting.
    held_out : bool
        The selection videos were drawn from the training split.
    """

    train_name: str
    train: SplitData
    selection_name: str
    selection: SplitData
    others: dict[str, SplitData]
    held_out: bool

    def named(self) -> dict[str, SplitData]:
        """Every split by its own name: the training split, the selection split, then the others."""
        return {self.train_name: self.train, self.selection_name: self.selection, **self.others}

    def roles(self) -> dict[str, str]:
        """Split name -> ``train``, ``selection`` or ``report``, in ``named`` order."""
        return {self.train_name: "train", self.selection_name: "selection", **dict.fromkeys(self.others, "report")}


def partition(splits: dict[str, SplitData], options: FitOptions) -> Partition:
    """Choose training and selection videos (see ``resolve_splits``).

    Uses the options ``train_split`` and ``validation_split``; without a labelled
    validation split, a share ``validation_fraction`` of the training split's source
    videos (``source_ids`` with ``source_delimiter``), drawn with ``holdout_seed``,
    is held out, every clip of a source on the same side, and reported as HOLDOUT_SPLIT.

    Raises
    ------
    SplitNameError
        A split name that is not among the labelled splits.
    DataError
        No labelled videos, or too few training sources to hold some out.
    """
    if not splits:
        raise DataError(
            "the cache has no labelled videos; attach them with `python -m cache labels CACHE FILE` or `make features LABELS=...`"
        )
    train_name, selection_name = resolve_splits(list(splits), options.train_split, options.validation_split)
    train = splits[train_name]
    if selection_name is not None:
        others = {name: split for name, split in splits.items() if name not in (train_name, selection_name)}
        return Partition(train_name, train, selection_name, splits[selection_name], others, held_out=False)
    if HOLDOUT_SPLIT in splits:
        raise SplitNameError(
            "validation_split",
            f"must name a split: the cache has a split named {HOLDOUT_SPLIT!r}, the name a hold-out is reported under; set it to {HOLDOUT_SPLIT!r} to select on that split",
        )
    sources = source_ids(train.video_ids, options.source_delimiter)
    fit_rows, held_rows = holdout_rows(sources, options.validation_fraction, options.holdout_seed)
    others = {name: split for name, split in splits.items() if name != train_name}
    return Partition(train_name, train.subset(fit_rows), HOLDOUT_SPLIT, train.subset(held_rows), others, held_out=True)


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


def centre_frames(videos: int, shape: CacheShape) -> np.ndarray:
    """(videos, T) frame indices of the middle stored frame of every segment."""
    per_segment = shape.frames_per_segment
    return np.broadcast_to(np.arange(shape.frames) * per_segment + per_segment // 2, (videos, shape.frames))


def random_frames(rng: np.random.Generator, videos: int, shape: CacheShape) -> np.ndarray:
    """(videos, T) frame indices of one randomly picked stored frame per segment."""
    per_segment = shape.frames_per_segment
    return np.arange(shape.frames) * per_segment + rng.integers(0, per_segment, size=(videos, shape.frames))


def model_inputs(
    split: SplitData, rows: np.ndarray, frame_index: np.ndarray, normalization: Normalization, names: tuple[str, ...]
) -> dict[str, np.ndarray]:
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
        visual = (
            split.visual[rows[:, None], frame_index].astype(np.float32) - normalization.visual_mean
        ) / normalization.visual_std
        inputs["visual"] = np.where(face[..., None], visual, np.float32(0.0))
    if "audio" in names:
        inputs["audio"] = (split.audio[rows] - normalization.audio_mean) / normalization.audio_std
    if "face" in names:
        inputs["face"] = face[..., None].astype(np.float32)
    return inputs


def evaluation_inputs(
    split: SplitData, normalization: Normalization, shape: CacheShape, names: tuple[str, ...], chunk: int
) -> Iterator[dict[str, np.ndarray]]:
    """Head inputs for a whole split, ``chunk`` videos at a time, centre frames.

    Yields dicts as ``model_inputs`` returns, in video order.
    """
    for start in range(0, len(split), chunk):
        rows = np.arange(start, min(start + chunk, len(split)))
        yield model_inputs(split, rows, centre_frames(len(rows), shape), normalization, names)


def epoch_order(split_size: int, shape: CacheShape, seed: int, epoch: int) -> tuple[np.ndarray, np.ndarray]:
    """The videos of one epoch, shuffled, and the stored frame each segment uses.

    Epoch ``epoch`` draws from a generator seeded with (seed, epoch), so the order
    depends on nothing else. When k > 1 one stored frame per segment is picked at
    random (augmentation that costs no decoding), else the centre frame.

    Returns
    -------
    (np.ndarray, np.ndarray)
        (N,) int64 video order and (N, T) int64 frame indices, row i for video order[i].
    """
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(split_size)
    if shape.frames_per_segment > 1:
        frame_index = random_frames(rng, split_size, shape)
    else:
        frame_index = centre_frames(split_size, shape)
    return order.astype(np.int64), np.ascontiguousarray(frame_index[order], dtype=np.int64)


def training_batches(
    split: SplitData, normalization: Normalization, shape: CacheShape, options: FitOptions, names: tuple[str, ...]
) -> Iterator[tuple[dict[str, np.ndarray], np.ndarray]]:
    """Endless (inputs, labels) batches of ``options.batch_size`` videos, epoch after epoch, built in numpy.

    The backend-agnostic stream (``training_stream`` uses it on JAX and torch).
    Epochs follow ``epoch_order`` with ``options.seed``; a single stream (not a
    per-epoch callback) keeps it exact under prefetching. The last batch of an
    epoch may be smaller.
    """
    batch_size = options.batch_size
    for epoch in itertools.count():
        order, frame_index = epoch_order(len(split), shape, options.seed, epoch)
        for start in range(0, len(split), batch_size):
            rows = order[start : start + batch_size]
            yield (
                model_inputs(split, rows, frame_index[start : start + batch_size], normalization, names),
                split.labels[rows],
            )


def training_dataset(
    split: SplitData, normalization: Normalization, shape: CacheShape, options: FitOptions, names: tuple[str, ...]
):
    """The same stream as ``training_batches``, as a TensorFlow ``tf.data.Dataset``.

    Only the per-epoch order is drawn in numpy (``epoch_order``, once per epoch);
    gathering and standardising each batch runs in TensorFlow's data threads,
    prefetched while the previous step trains, with the same float32 arithmetic
    as ``model_inputs``, so the batches are equal.

    Returns
    -------
    tf.data.Dataset
        Endless (inputs, labels): inputs as ``model_inputs`` builds them, labels
        (batch, k) float32.
    """
    import tensorflow as tf

    stored = split.visual.shape[1]
    with tf.device("/CPU:0"):  # the data pipeline runs on the host; keep its copy there, not on an accelerator
        visual = tf.constant(split.visual.reshape(-1, split.visual.shape[-1]))
        face = tf.constant(split.face.reshape(-1))
        audio = tf.constant((split.audio - normalization.audio_mean) / normalization.audio_std)
        labels = tf.constant(split.labels)
        visual_mean, visual_std = tf.constant(normalization.visual_mean), tf.constant(normalization.visual_std)

    # Plain Python control flow only: AutoGraph has nothing to convert (and fails on some gast versions).
    @tf.autograph.experimental.do_not_convert
    def draw(epoch):
        order, frame_index = tf.numpy_function(
            lambda number: epoch_order(len(split), shape, options.seed, int(number)),
            [epoch],
            (tf.int64, tf.int64),
            stateful=False,
        )
        return tf.ensure_shape(order, (len(split),)), tf.ensure_shape(frame_index, (len(split), shape.frames))

    @tf.autograph.experimental.do_not_convert
    def assemble(rows, frame_index):
        flat = rows[:, None] * stored + frame_index  # (batch, T) rows of the flattened frames
        found = tf.gather(face, flat)
        inputs = {}
        if "visual" in names:
            standardised = (tf.cast(tf.gather(visual, flat), tf.float32) - visual_mean) / visual_std
            inputs["visual"] = tf.where(found[..., None], standardised, tf.zeros_like(standardised))
        if "audio" in names:
            inputs["audio"] = tf.gather(audio, rows)
        if "face" in names:
            inputs["face"] = tf.cast(found, tf.float32)[..., None]
        return inputs, tf.gather(labels, rows)

    @tf.autograph.experimental.do_not_convert
    def batch_rows(order, frame_index):
        return tf.data.Dataset.from_tensor_slices((order, frame_index)).batch(options.batch_size)

    return tf.data.Dataset.counter().map(draw).flat_map(batch_rows).map(assemble).prefetch(tf.data.AUTOTUNE)


def training_stream(
    split: SplitData,
    normalization: Normalization,
    shape: CacheShape,
    options: FitOptions,
    names: tuple[str, ...],
    backend: str,
):
    """``training_dataset`` on the TensorFlow backend, ``training_batches`` on any other."""
    make = training_dataset if backend == "tensorflow" else training_batches
    return make(split, normalization, shape, options, names)
