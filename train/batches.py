"""Head inputs cut from the in-memory cache: evaluation chunks and endless training batches, in numpy or tf.data.

Pure numpy at import: only ``training_dataset`` imports TensorFlow, when called.
Both streams standardise through ``train.normalization.standardize``.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import numpy as np

from train.config import FitOptions
from train.dataset import CacheShape, SplitData
from train.normalization import Normalization, standardize


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
        As ``standardize`` builds them: ``visual`` (n, T, 2048), ``audio`` (n, T, 68)
        and ``face`` (n, T, 1), float32.
    """
    picked = rows[:, None], frame_index
    visual = split.visual[picked] if "visual" in names else None
    audio = split.audio[rows] if "audio" in names else None
    return standardize(visual, audio, split.face[picked], normalization, names)


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
    prefetched while the previous step trains, through the same ``standardize``
    as ``model_inputs``, so the batches are equal.

    Returns
    -------
    tf.data.Dataset
        Endless (inputs, labels): inputs as ``model_inputs`` builds them, labels
        (batch, k) float32.
    """
    import tensorflow as tf
    import tensorflow.experimental.numpy as tnp

    stored = split.visual.shape[1]
    with tf.device("/CPU:0"):  # the data pipeline runs on the host; keep its copy there, not on an accelerator
        visual = tf.constant(split.visual.reshape(len(split) * stored, split.visual.shape[-1]))  # width may be 0
        face = tf.constant(split.face.reshape(-1))
        audio = tf.constant(split.audio)
        labels = tf.constant(split.labels)

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
        picked_visual = tf.gather(visual, flat) if "visual" in names else None
        picked_audio = tf.gather(audio, rows) if "audio" in names else None
        inputs = standardize(picked_visual, picked_audio, tf.gather(face, flat), normalization, names, xp=tnp)
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
