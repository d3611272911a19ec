"""Big Five scores for new videos: the run's recorded extraction, then its head.

The only module of ``train`` that uses ``extract``: a new video must go through
exactly the extraction the training cache went through (same frames, faces,
weights and audio settings), which the run recorded.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cache.manifest import file_digest
from cache.schema import TRAITS, VideoRecord
from train.config import DEFAULT_FEATURES
from train.dataset import SplitData, joined_sets
from train.run import RunError, open_folder, weights_warning


@dataclass(frozen=True)
class Predictions:
    """What ``predict_videos`` found.

    Attributes
    ----------
    video_ids : list of str
        Videos that were scored, in input order.
    scores : np.ndarray
        (len(video_ids), k) float32 scores in [0, 1], one column per target.
    failures : list of (str, str)
        (path, reason) of every video that could not be featurized.
    warning : str or None
        Set when the run's embeddings came from random weights.
    targets : tuple of str
        The k targets the run predicts (the five traits unless trained on others).
    """

    video_ids: list[str]
    scores: np.ndarray
    failures: list[tuple[str, str]]
    warning: str | None
    targets: tuple[str, ...] = TRAITS


def _set_rows(record: VideoRecord, name: str, options: dict) -> np.ndarray:
    """One video's array of the set ``name``: (T*k, D) for a visual set, (T, D) for an audio set.

    The default sets come with the record; the others are computed from its crops or sound
    track as ``python -m extract add`` computes them from a cache's, with the set's recorded
    ``options`` (``weights``, ``seed``, ``audio_rate``).
    """
    if name == DEFAULT_FEATURES[0]:
        return record.face_embeddings
    if name == DEFAULT_FEATURES[1]:
        return record.audio_features
    source, _, extractor = name.partition(":")
    if str(options.get("weights", "")).startswith("sha256:"):
        raise RunError(
            f"set {name} was added with a weights file known only by its hash ({options['weights'][:15]}...);"
            " predict cannot find that file: score the videos with `evaluate` on a cache that holds the set"
        )
    if source == "face" and record.face_crops is not None:
        from extract.backbones import embed_images

        return embed_images(record.face_crops, extractor, str(options["weights"]), int(options.get("seed", 0)))
    if source == "audio" and record.duration is not None:
        from extract.smile import load_library, smile_features

        load_library()
        sound = record.sound_track if record.has_audio else None
        return smile_features(
            sound, int(options["audio_rate"]), float(record.duration), len(record.audio_features), extractor
        )
    raise RunError(
        f"{record.video_id}: predict cannot compute set {name} from a new video (whole-frame sets need the"
        f" frames, which prediction does not keep); score it with `evaluate` on a cache that holds it"
    )


def set_options(recorded: dict[str, dict], extraction, features: tuple[str, ...]) -> dict[str, dict]:
    """Set name -> the options its numbers were computed with: as the run recorded them (``RunFolder.feature_sets``),
    else the extraction's weights, seed and audio rate (a run recorded before sets had options)."""
    fallback = {
        "weights": extraction.embed.weights,
        "seed": extraction.seed,
        "audio_rate": extraction.decode.audio_rate,
    }
    return {name: {**fallback, **recorded.get(name, {}).get("options", {})} for name in features}


def records_to_split(
    records: list[VideoRecord],
    targets: tuple[str, ...] = TRAITS,
    features: tuple[str, ...] = DEFAULT_FEATURES,
    options: dict[str, dict] | None = None,
) -> SplitData:
    """Stack featurized videos into a SplitData of the sets ``features``, with unknown (NaN) labels of ``targets``.

    ``options`` (``set_options``) gives each set other than the default ones the options it is computed with.
    """
    options = options or {}
    sets = {name: np.stack([_set_rows(record, name, options.get(name, {})) for record in records]) for name in features}
    face = np.stack([record.face_found for record in records])
    visual, audio = joined_sets(sets, features, face)
    return SplitData(
        video_ids=np.array([record.video_id for record in records], dtype=object),
        visual=visual,
        audio=audio,
        face=face,
        labels=np.full((len(records), len(targets)), np.nan, dtype=np.float32),
        sets=sets,
    )


def _check_weights_file(config: dict) -> None:
    """Refuse to embed with a weights file other than the one the cache was built with."""
    recorded = config.get("weights_sha256")
    if recorded is None:
        return
    path = Path(config["weights"])
    if not path.is_file():
        raise RunError(
            f"{path}: the ResNet50 weights file this run's cache was built with is gone; put it back at that path"
        )
    if file_digest(path) != recorded:
        raise RunError(
            f"{path}: the ResNet50 weights file changed since the cache was built (SHA-256 differs); predictions would not match the training features"
        )


def predict_videos(run_path: Path, paths: list[Path]) -> Predictions:
    """Featurize videos with the run's extraction options and score them.

    Parameters
    ----------
    run_path : Path
        Run folder written by ``train fit``, or ensemble folder by ``train ensemble``.
    paths : list of Path
        Video files.

    Returns
    -------
    Predictions
        One row per video that could be decoded; the others as failures.
    """
    from extract.config import ExtractOptions
    from extract.parallel import featurize

    run = open_folder(run_path)
    options = ExtractOptions.from_dict(run.extraction_config)
    _check_weights_file(run.extraction_config)
    records: list[VideoRecord] = []
    failures: list[tuple[str, str]] = []
    for result in featurize(paths, options):
        if isinstance(result, VideoRecord):
            records.append(result)
        else:
            failures.append((str(result.path), result.reason))
    warning = weights_warning(run.extraction_config)
    if not records:
        return Predictions([], np.zeros((0, len(run.targets)), np.float32), failures, warning, run.targets)
    split = records_to_split(records, run.targets, run.features, set_options(run.feature_sets, options, run.features))
    scores = run.predict({"new": split})["new"]
    return Predictions([record.video_id for record in records], scores, failures, warning, run.targets)


def predictions_csv(predictions: Predictions) -> str:
    """CSV text: a ``video_id`` column and one column per target of the run."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(("video_id", *predictions.targets))
    for video_id, scores in zip(predictions.video_ids, predictions.scores):
        writer.writerow((video_id, *(f"{value:.6f}" for value in scores)))
    return buffer.getvalue()
