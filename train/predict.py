"""Big Five scores for new videos: the run's recorded extraction, then its head.

The only module of ``train`` that uses ``extract``: a new video must go through
exactly the extraction the training cache went through (same frames, faces,
weights and audio settings), which the run recorded.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from cache.schema import TRAITS, VideoRecord
from common.errors import OptionError
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

    The default sets come with the record; the others are computed from its face crops, whole
    frames or sound track as ``python -m extract add`` computes them from a cache's, with the
    set's ``options`` (``weights``: named weights or a file path, ``seed``, ``audio_rate``). Whole
    frames are letterboxed to the crop size by the extraction, as a cache stores them, so a scene
    set sees the images ``add`` embedded.
    """
    if name == DEFAULT_FEATURES[0]:
        return record.face_embeddings
    if name == DEFAULT_FEATURES[1]:
        return record.audio_features
    source, _, extractor = name.partition(":")
    images = {"face": record.face_crops, "scene": record.whole_frames}.get(source)
    if images is not None:
        from extract.backbones import embed_images

        return embed_images(images, extractor, str(options["weights"]), int(options.get("seed", 0)))
    if source == "audio" and record.duration is not None:
        from extract.smile import load_library, smile_features

        load_library()
        sound = record.sound_track if record.has_audio else None
        return smile_features(
            sound, int(options["audio_rate"]), float(record.duration), len(record.audio_features), extractor
        )
    from extract.adding import NEEDS

    _, what, flag = NEEDS[source]
    raise RunError(
        f"{record.video_id}: was featurized without its {what}, which {name} is computed from;"
        f" featurize it with the extraction option {flag}"
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


def weights_files(pairs: list[str]) -> dict[str, Path]:
    """The weights files ``--weights SET=FILE`` gives (the option repeated once per set), by set name.

    Raises
    ------
    OptionError
        Of ``weights``, for a value that is not SET=FILE or a set named twice.
    """
    files: dict[str, Path] = {}
    for pair in pairs:
        name, separator, file = (part.strip() for part in pair.partition("="))
        if not (separator and name and file):
            raise OptionError("weights", f"{pair!r} is not SET=FILE; expected e.g. face:vgg16=vgg-face.weights.h5")
        if name in files:
            raise OptionError("weights", f"names {name} twice; give one file per set")
        files[name] = Path(file).expanduser()
    return files


def _recorded_files(extraction_config: dict, options: dict[str, dict]) -> dict[str, str]:
    """Set name -> ``sha256:...`` identity of the weights file the set was computed with, for each set computed with one.

    The default face set's file is the extraction's own (``weights_sha256`` in its config), which
    the extraction also ran on every video whatever sets the run reads; an added set's is its recorded ``weights``.
    """
    from extract.featuresets import FILE_IDENTITY

    recorded = {
        name: str(chosen["weights"])
        for name, chosen in options.items()
        if str(chosen.get("weights", "")).startswith(FILE_IDENTITY)
    }
    if "weights_sha256" in extraction_config:
        recorded[DEFAULT_FEATURES[0]] = FILE_IDENTITY + extraction_config["weights_sha256"]
    return recorded


def weights_paths(extraction_config: dict, options: dict[str, dict], given: dict[str, Path]) -> dict[str, str]:
    """The weights file to compute each set with, for the sets computed with a file, checked against its recorded SHA-256.

    Parameters
    ----------
    extraction_config : dict
        The run's recorded extraction config.
    options : dict of str to dict
        ``set_options`` of the sets the run reads.
    given : dict of str to Path
        ``weights_files`` of ``--weights SET=FILE``: a file for any of those sets; the default face set
        falls back on the path the extraction recorded.

    Returns
    -------
    dict of str to str
        Set name -> path of its weights file.

    Raises
    ------
    OptionError
        Of ``weights``, for a file given for a set the run does not read or that was not computed with a
        file, or a file that is missing or is not the file the set was computed with (SHA-256).
    RunError
        For an added set computed with a file none was given for, naming the flag that gives it; for the
        extraction's own file, gone from its recorded path or changed since.
    """
    from extract.featuresets import weights_identity

    recorded = _recorded_files(extraction_config, options)
    for name in given.keys() - recorded.keys():
        reason = (
            f"which was computed with weights {options[name].get('weights')}, not a file"
            if name in options
            else f"which the run does not read (it reads {', '.join(options)})"
        )
        raise OptionError("weights", f"names {name}, {reason}; drop it")
    paths = {}
    for name, identity in recorded.items():
        if name in given:
            path = given[name]
            if not path.is_file():
                raise OptionError(
                    "weights", f"{name}={path}: no such file; pass the weights file {name} was computed with"
                )
            if weights_identity(str(path)) != identity:
                raise OptionError(
                    "weights",
                    f"{name}={path}: not the file {name} was computed with (its SHA-256 differs from the recorded"
                    f" {identity[:19]}...); pass the weights file the set was computed with",
                )
        elif name == DEFAULT_FEATURES[0]:
            path = Path(extraction_config["weights"])
            flag = f"--weights {name}=FILE"
            if not path.is_file():
                raise RunError(
                    f"{path}: the ResNet50 weights file this run's cache was built with is gone; put it back at that"
                    f" path or pass it with {flag}"
                )
            if weights_identity(str(path)) != identity:
                raise RunError(
                    f"{path}: the ResNet50 weights file changed since the cache was built (SHA-256 differs); predictions"
                    f" would not match the training features: pass the file the cache was built with as {flag}"
                )
        else:
            raise RunError(
                f"set {name} was computed with a weights file known only by its hash ({identity[:19]}...);"
                f" pass that file with --weights {name}=FILE"
            )
        paths[name] = str(path)
    return paths


def predict_videos(run_path: Path, paths: list[Path], weights: dict[str, Path] | None = None) -> Predictions:
    """Featurize videos with the run's extraction options, compute the run's sets and score them.

    Parameters
    ----------
    run_path : Path
        Run folder written by ``train fit``, or ensemble folder by ``train ensemble``.
    paths : list of Path
        Video files.
    weights : dict of str to Path, optional
        Set name -> the weights file it was computed with (``weights_files``), for sets added with a
        file: the run knows such a file by its SHA-256 only.

    Returns
    -------
    Predictions
        One row per video that could be decoded; the others as failures.

    Raises
    ------
    OptionError, RunError
        Before any video is opened: see ``weights_paths``.
    """
    from extract.config import ExtractOptions
    from extract.parallel import featurize

    run = open_folder(run_path)
    options = ExtractOptions.from_dict(run.extraction_config)
    by_set = set_options(run.feature_sets, options, run.features)
    files = weights_paths(run.extraction_config, by_set, weights or {})
    by_set = {name: {**chosen, "weights": files.get(name, chosen["weights"])} for name, chosen in by_set.items()}
    if DEFAULT_FEATURES[0] in files:
        options = replace(options, embed=replace(options.embed, weights=files[DEFAULT_FEATURES[0]]))
    # Scene sets are computed from the sampled whole frames, which the extraction keeps only when asked.
    if any(name.startswith("scene:") for name in run.features):
        options = replace(options, keep_frames=True)
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
    split = records_to_split(records, run.targets, run.features, by_set)
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
