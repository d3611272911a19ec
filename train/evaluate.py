"""Score a trained head on cached splits, against the training-mean baseline."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cache.reader import CacheReader
from train.data import CacheShape, Normalization, SplitData, evaluation_inputs, load_cache
from train.metrics import score
from train.model import input_names
from train.predictions import SplitPredictions, write_predictions
from train.run import Run, RunError

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
        (N, 5) float32 scores in [0, 1].
    """
    names = tuple(input_names(model))
    parts = [
        np.asarray(model.predict_on_batch(inputs), dtype=np.float32)
        for inputs in evaluation_inputs(split, normalization, shape, names, PREDICT_CHUNK)
    ]
    return np.concatenate(parts)


def score_splits(
    model,
    splits: dict[str, SplitData],
    normalization: Normalization,
    shape: CacheShape,
    predictions_path: Path | None = None,
) -> dict[str, dict]:
    """``train.metrics.score`` of every split, the training mean as baseline.

    With ``predictions_path``, the per-video predictions are also written there
    (``train.predictions``) for ``compare``'s intervals and ``ensemble``.
    """
    predicted = {name: predict_split(model, split, normalization, shape) for name, split in splits.items()}
    if predictions_path is not None:
        write_predictions(
            predictions_path,
            {
                name: SplitPredictions(splits[name].video_ids, values, splits[name].labels)
                for name, values in predicted.items()
            },
        )
    return {name: score(splits[name].labels, values, normalization.label_mean) for name, values in predicted.items()}


def evaluate(run_path: Path, cache_path: Path, splits: tuple[str, ...] | None = None) -> tuple[Run, dict[str, dict]]:
    """Score a run or an ensemble on splits of a cache built with its extraction config.

    Parameters
    ----------
    run_path : Path
        Run folder written by ``train fit``, or ensemble folder by ``train ensemble``.
    cache_path : Path
        Cache folder.
    splits : tuple of str, optional
        Splits to score; default every split with labelled videos.

    Returns
    -------
    (Run or Ensemble, dict)
        The opened run, and split -> scores as ``train.metrics.score`` gives them.

    Raises
    ------
    RunError
        The cache was built with another extraction config (the differing keys are
        named), or none of the splits has labelled videos.
    """
    from train.ensemble import open_run_or_ensemble, predict_with  # ensemble builds on predict_split above

    opened = open_run_or_ensemble(run_path)
    reader = CacheReader(cache_path)
    opened.check_cache(reader.config, reader.config_hash, Path(cache_path))
    data = load_cache(reader, splits)
    if not data.splits:
        raise RunError(f"{cache_path}: no labelled videos in {', '.join(splits or reader.splits()) or 'any split'}")
    predicted = predict_with(opened, data.splits)
    return opened, {
        name: score(split.labels, predicted[name], opened.label_mean) for name, split in data.splits.items()
    }
