"""A head's predictions for cached videos: what runs, ensembles and ``fit``'s scoring share."""

from __future__ import annotations

import numpy as np

from train.batches import evaluation_inputs
from train.dataset import CacheShape, SplitData
from train.model import input_names
from train.normalization import Normalization

PREDICT_CHUNK = 512  # videos per model call: bounds memory at ~40 MB of float32 inputs (T = 10)


def predict_split(model, split: SplitData, normalization: Normalization, shape: CacheShape) -> np.ndarray:
    """Trait predictions for every video of a split, from its centre frames.

    Parameters
    ----------
    model : keras.Model
        A head from ``train.model.build_head``.
    split : SplitData
        N videos.
    normalization : Normalization
    shape : CacheShape
        T and k of the cache.

    Returns
    -------
    np.ndarray
        (N, k) float32 scores in [0, 1], one column per target of the model.
    """
    names = tuple(input_names(model))
    parts = [
        np.asarray(model.predict_on_batch(inputs), dtype=np.float32)
        for inputs in evaluation_inputs(split, normalization, shape, names, PREDICT_CHUNK)
    ]
    return np.concatenate(parts)
