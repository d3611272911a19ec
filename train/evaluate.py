"""Score a trained head on cached splits, against the training-mean baseline."""

from __future__ import annotations

from pathlib import Path

from cache.reader import CacheReader
from cache.schema import TRAITS
from train.dataset import CacheData, CacheShape, SplitData, load_cache
from train.inference import predict_split
from train.metrics import score
from train.normalization import Normalization
from train.predictions import SplitPredictions, write_predictions
from train.run import RunError, RunFolder, open_folder


def score_splits(
    model,
    splits: dict[str, SplitData],
    normalization: Normalization,
    shape: CacheShape,
    predictions_path: Path | None = None,
    targets: tuple[str, ...] = TRAITS,
) -> dict[str, dict]:
    """``train.metrics.score`` of every split, the training mean as baseline.

    With ``predictions_path``, the per-video predictions are also written there
    (``train.predictions``) for ``compare``'s intervals and ``ensemble``.
    ``targets`` names the model's outputs (default the five traits).
    """
    predicted = {name: predict_split(model, split, normalization, shape) for name, split in splits.items()}
    if predictions_path is not None:
        write_predictions(
            predictions_path,
            {
                name: SplitPredictions(splits[name].video_ids, values, splits[name].labels, targets)
                for name, values in predicted.items()
            },
        )
    return {
        name: score(splits[name].labels, values, normalization.label_mean, targets)
        for name, values in predicted.items()
    }


def check_sets(trained: dict[str, dict], held: list[dict], cache_path: Path) -> None:
    """Refuse a cache holding one of the run's added sets with another identity (other weights or options).

    Parameters
    ----------
    trained : dict of str to dict
        The run's ``feature_sets``: set name -> its recorded ``identity`` and ``options``.
    held : list of dict
        ``CacheReader.feature_sets()``.
    cache_path : Path

    Raises
    ------
    RunError
        Naming the set and both identities.
    """
    identities = {entry["name"]: entry["identity"] for entry in held}
    for name, entry in trained.items():
        if name in identities and identities[name] != entry["identity"]:
            raise RunError(
                f"{cache_path}: holds {name} with identity {identities[name]}, but the run was trained on {name}"
                f" {entry['identity']} (other weights or options); add the set as the run's cache had it"
                f" ({entry.get('options', {})}) or evaluate on that cache"
            )


def overlap_warnings(trained: dict[str, str], data: CacheData) -> list[str]:
    """Warnings, with counts, for the splits of ``data`` that hold videos the run was fitted on, by id or by content."""
    contents = set(trained.values())
    warnings = []
    for name, split in data.splits.items():
        by_id = sum(str(video) in trained for video in split.video_ids)
        by_content = sum(data.content_hashes[video] in contents for video in split.video_ids)
        if by_id or by_content:
            warnings.append(
                f"warning: {by_id} of the {len(split)} {name!r} videos were trained on by this run (same video id) and {by_content} have the "
                "content of a video it trained on (same file hash); leak: their scores are optimistic"
            )
    return warnings


def evaluate(
    run_path: Path, cache_path: Path, splits: tuple[str, ...] | None = None
) -> tuple[RunFolder, dict[str, dict], list[str]]:
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
    (train.run.RunFolder, dict, list of str)
        The opened run, split -> scores as ``train.metrics.score`` gives them, and
        warnings for splits that hold videos the run (or a member) was trained on,
        by video id or content hash, with counts (none for runs that predate
        ``training_videos.json``).

    Raises
    ------
    RunError
        The cache was built with another extraction config (the differing keys are
        named), or none of the splits has labelled videos.
    """
    opened = open_folder(run_path)
    reader = CacheReader(cache_path)
    opened.check_cache(reader.config, reader.config_hash, Path(cache_path))
    check_sets(opened.feature_sets, reader.feature_sets(), Path(cache_path))
    data = load_cache(reader, splits, opened.targets, opened.features)
    if not data.splits:
        raise RunError(f"{cache_path}: no labelled videos in {', '.join(splits or reader.splits()) or 'any split'}")
    predicted = opened.predict(data.splits)
    trained = opened.training_videos()
    warnings = [] if trained is None else overlap_warnings(trained, data)
    scores = {
        name: score(split.labels, predicted[name], opened.label_mean, opened.targets)
        for name, split in data.splits.items()
    }
    return opened, scores, warnings
