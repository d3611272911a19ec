"""Fit a head from the cache into a run folder, and report its scores."""

from __future__ import annotations

import contextlib
import math
import shutil
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cache.manifest import plural
from cache.reader import CacheReader
from cache.schema import OPTIONS_FILE
from cache.sets import stored_sets
from common.errors import OptionError
from common.options import replace
from common.quiet import QuietStderr, start_keras
from train.batches import centre_frames, model_inputs, training_stream
from train.config import FitOptions
from train.dataset import CacheData, CacheShape, load_cache
from train.epochs import epoch_printer
from train.metrics import aggregate_seeds, baseline_scores, format_table
from train.normalization import Normalization, fit_normalization
from train.predictions import PREDICTIONS_FILE
from train.report import plot_curves, read_history, write_combined_history
from train.run import (
    CURVES_FILE,
    HISTORY_FILE,
    HOLDOUT_FILE,
    METRICS_FILE,
    MODEL_FILE,
    NORMALIZATION_FILE,
    SEED_FOLDER,
    TRAINING_FILE,
    FolderWriter,
    RunError,
    open_run,
    run_record,
)
from train.splits import Partition, count_sources, partition, resolve_splits, source_ids

MONITOR = "val_mean_accuracy"  # the ChaLearn metric selects, stops and lowers the rate
VALIDATION_BATCH = 256  # videos per validation step: larger than training batches, same result
FEW_TRAINING_VIDEOS = 20  # below this many training videos a head's scores are noise: warn
# Batches per compiled call on TensorFlow; callbacks act per epoch, so nothing waits on a step.
MAX_STEPS_PER_EXECUTION = 32
KERAS_PROGRESS, EPOCH_LINES = 1, 2  # values of the verbose option: Keras' progress bar, or one line of ours per epoch


@dataclass(frozen=True)
class Fitting:
    """What every seed of one fit trains and selects on.

    Attributes
    ----------
    shape : CacheShape
        T and k of the cache.
    parts : Partition
        Training, selection and reported videos.
    normalization : Normalization
        Statistics of the training videos.
    """

    shape: CacheShape
    parts: Partition
    normalization: Normalization


def prepare_fitting(data: CacheData, options: FitOptions) -> Fitting:
    """Partition the cache's labelled videos as the options say and fit the normalisation on the training ones.

    Raises
    ------
    train.splits.SplitNameError
        ``train_split`` or ``validation_split`` names a split the cache lacks.
    train.dataset.DataError
        No labelled videos, or too few training sources to hold some out.
    """
    parts = partition(data.splits, options)
    return Fitting(data.shape, parts, fit_normalization(parts.train))


@dataclass(frozen=True)
class Training:
    """A seeded, compiled head and what ``model.fit`` takes for it.

    Attributes
    ----------
    model : keras.Model
    steps : int
        Training steps per epoch.
    stream
        Endless training batches (``train.batches.training_stream``).
    validation : (dict of str to np.ndarray, np.ndarray)
        Inputs (centre frames) and (N, k) labels of the selection videos.
    """

    model: Any
    steps: int
    stream: Any
    validation: tuple[dict[str, np.ndarray], np.ndarray]


def selection_data(fitting: Fitting, names: tuple[str, ...]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Head inputs ``names`` of every selection video, centre frames, and their (N, k) labels."""
    selection = fitting.parts.selection
    rows = np.arange(len(selection))
    inputs = model_inputs(selection, rows, centre_frames(len(selection), fitting.shape), fitting.normalization, names)
    return inputs, selection.labels


def prepare_training(options: FitOptions, fitting: Fitting) -> Training:
    """Seed Keras with ``options.seed``, build and compile ``options.head``, and stream its training batches.

    Under a mixed-precision policy, call it inside that policy: the layers take it when built.
    """
    import keras

    from train.model import build_head, input_names

    keras.utils.set_random_seed(options.seed)
    train = fitting.parts.train
    model = build_head(options, fitting.shape.frames, (train.visual.shape[-1], train.audio.shape[-1]))
    names = tuple(input_names(model))
    steps = math.ceil(len(fitting.parts.train) / options.batch_size)
    compile_head(model, options.lr, steps)
    stream = training_stream(
        fitting.parts.train, fitting.normalization, fitting.shape, options, names, keras.backend.backend()
    )
    return Training(model, steps, stream, selection_data(fitting, names))


def fit(options: FitOptions, echo: Callable[[str], None] = print, resume: bool = False) -> dict[str, dict]:
    """Train ``options.head`` on the cache, once per seed, into ``options.out``.

    Parameters
    ----------
    options : FitOptions
    echo : callable
        Receives each line of the report (splits used, metrics tables, warnings).
    resume : bool
        ``out`` is a run that was interrupted (``sweep`` passes it for its own
        folders): it is replaced without ``overwrite``, except the seed folders it
        had finished with the same options and training data, which are kept as
        they are and not fitted again.

    Returns
    -------
    dict
        split -> scores (``train.metrics.score`` plus ``role``: ``train``,
        ``selection`` or ``report``; averaged with ``_std`` fields when several
        seeds ran), as written to ``metrics.json``. Every labelled split appears
        under its own name; a hold-out under ``holdout``.

    Raises
    ------
    RunError
        ``out`` already holds a run and ``overwrite`` is off (checked before the
        cache is read).
    common.quiet.KerasBackendError
        Keras cannot start its configured backend (checked before the cache is read).
    common.errors.CacheError
        The cache is missing or damaged.
    train.splits.SplitNameError
        ``train_split`` or ``validation_split`` names a split the cache lacks.
    train.dataset.DataError
        The cache has no usable training data.
    """
    writer = FolderWriter(Path(options.out), "run")
    if not resume:
        writer.refuse_existing(options.overwrite)
    start_keras()
    data, fitting = _read_cache(options, echo)
    parts = fitting.parts
    warnings = data_warnings(fitting) + leak_warnings(parts, options.source_delimiter, data.content_hashes)
    for warning in warnings:
        echo(warning)
    info = _run_info(options, data, parts)
    seeds = options.run_seeds
    kept = _finished_seeds(writer.path, options, info, fitting) if resume and len(seeds) > 1 else {}
    # Only now that the cache proved usable may --overwrite remove the old run.
    writer.clear(keep=tuple(writer.path / SEED_FOLDER.format(seed=seed) for seed in kept))
    # The top folder is a run from the start, so a crash leaves it replaceable with --overwrite.
    _write_run_files(writer, options, info, fitting, data.content_hashes)
    if len(seeds) == 1:
        metrics = _fit_seed(replace(options, seed=seeds[0], seeds=()), fitting, echo)
        best = metrics[parts.selection_name]
    else:
        metrics, best, selected = _fit_seeds(options, info, fitting, data.content_hashes, kept, echo)
        info = {**info, "selected_seed": selected}
    if best["mean_accuracy"] < best["baseline_mean_accuracy"]:
        warnings.append(
            f"warning: the best {parts.selection_name!r} mean accuracy, {best['mean_accuracy']:.4f}, is below the baseline of predicting the training mean, "
            f"{best['baseline_mean_accuracy']:.4f}: this head learned nothing useful here"
        )
    writer.write_record({**info, "warnings": warnings})
    writer.finish(metrics)
    echo(format_table(metrics))
    for warning in ([info["warning"]] if info["warning"] else []) + warnings:
        echo(warning)
    echo(f"run saved to {writer.path}")
    return metrics


def _read_cache(options: FitOptions, echo: Callable[[str], None]) -> tuple[CacheData, Fitting]:
    """Read the cache's labelled videos and partition them as the options say, reporting what was read and used."""
    reader = CacheReader(Path(options.cache))
    if reader.splits():
        resolve_splits(list(reader.splits()), options.train_split, options.validation_split, kind="split")
    started = time.perf_counter()
    data = load_cache(reader, targets=options.targets, features=options.features)
    fitting = prepare_fitting(data, options)
    echo(
        f"read {plural(sum(len(split) for split in data.splits.values()), 'labelled video')} from {options.cache} in {time.perf_counter() - started:.1f} s"
    )
    if sum(data.unlabelled.values()):
        echo(
            f"left out {plural(sum(data.unlabelled.values()), 'video')} lacking a label of {', '.join(options.targets)}"
        )
    for line in describe_partition(fitting.parts, options):
        echo(line)
    return data, fitting


def _fit_seeds(
    options: FitOptions,
    info: dict,
    fitting: Fitting,
    content_hashes: dict[str, str],
    kept: dict[int, dict],
    echo: Callable[[str], None],
) -> tuple[dict[str, dict], dict, int]:
    """Fit every seed into its own folder under ``options.out`` (but those in ``kept``) and combine them.

    Returns the scores aggregated over seeds, the best seed's selection-split scores,
    and that seed, whose model and predictions the top folder gets.
    """
    out, seeds, selection_name = Path(options.out), options.run_seeds, fitting.parts.selection_name
    per_seed, histories = {}, {}
    for seed in seeds:
        folder = out / SEED_FOLDER.format(seed=seed)
        seed_options = replace(options, seed=seed, seeds=(), out=str(folder))
        if seed in kept:
            echo(f"seed {seed}: kept as an interrupted run had finished it ({folder})")
            per_seed[seed] = kept[seed]
        else:
            seed_writer = FolderWriter(folder, "run")
            _write_run_files(seed_writer, seed_options, {**info, "seeds": [seed]}, fitting, content_hashes)
            per_seed[seed] = _fit_seed(seed_options, fitting, echo)
            seed_writer.finish(per_seed[seed])
        histories[seed] = read_history(folder / HISTORY_FILE)
    selected = max(seeds, key=lambda seed: per_seed[seed][selection_name]["mean_accuracy"])
    shutil.copy2(out / SEED_FOLDER.format(seed=selected) / MODEL_FILE, out / MODEL_FILE)
    # The predictions of that model go with it.
    shutil.copy2(out / SEED_FOLDER.format(seed=selected) / PREDICTIONS_FILE, out / PREDICTIONS_FILE)
    write_combined_history(histories, out / HISTORY_FILE)
    plot_curves(
        histories,
        out / CURVES_FILE,
        f"{options.head} head, seeds {', '.join(map(str, seeds))}",
        baseline_scores(fitting.parts.selection.labels, fitting.normalization.label_mean),
        selection_name,
    )
    echo(
        f"\nmean ± std over seeds {', '.join(map(str, seeds))}; {MODEL_FILE} is seed {selected} (best {selection_name!r} mean accuracy)"
    )
    return aggregate_seeds(per_seed), per_seed[selected][selection_name], selected


def describe_partition(parts: Partition, options: FitOptions) -> list[str]:
    """One line per split role: which split, how many videos and source videos."""

    def sized(split) -> str:
        return f"{plural(len(split), 'video')} from {plural(count_sources(split.video_ids, options.source_delimiter), 'source video')}"

    lines = [f"training on split {parts.train_name!r}: {sized(parts.train)}"]
    if parts.held_out:
        lines.append(
            f"selecting on {parts.selection_name!r}: {sized(parts.selection)}, held out of split {parts.train_name!r} "
            f"(--validation-fraction {options.validation_fraction} of its source videos, --holdout-seed {options.holdout_seed}, "
            f"source = video id up to the first {options.source_delimiter!r}; ids in {HOLDOUT_FILE})"
        )
    else:
        lines.append(f"selecting on split {parts.selection_name!r}: {sized(parts.selection)}")
    lines += [f"reporting on split {name!r}: {sized(split)}" for name, split in parts.others.items()]
    return lines


def data_warnings(fitting: Fitting) -> list[str]:
    """Warnings about training data that cannot give a useful head."""
    train = fitting.parts.train
    warnings = []
    if len(train) < FEW_TRAINING_VIDEOS:
        warnings.append(
            f"warning: only {plural(len(train), 'training video')}; with fewer than {FEW_TRAINING_VIDEOS} the scores are noise"
        )
    if baseline_scores(train.labels, fitting.normalization.label_mean)["mean_accuracy"] == 1.0:
        warnings.append(
            "warning: every training video has the same scores (train baseline 1.0000): the labels are degenerate; check the label file"
        )
    return warnings


def leak_warnings(parts: Partition, delimiter: str, content_hashes: dict[str, str]) -> list[str]:
    """Warnings, with counts, when a scored split shares source videos or file contents with the training videos.

    Parameters
    ----------
    parts : Partition
    delimiter : str
        ``source_delimiter``: a video's source is its id up to the first one.
    content_hashes : dict of str to str
        Video id -> content hash (``CacheData.content_hashes``).
    """
    train_sources = np.unique(source_ids(parts.train.video_ids, delimiter))
    train_contents = {content_hashes[video] for video in parts.train.video_ids}
    scored = {parts.selection_name: parts.selection, **parts.others}
    warnings = []
    for name, split in scored.items():
        by_source = int(np.isin(source_ids(split.video_ids, delimiter), train_sources).sum())
        by_content = sum(content_hashes[video] in train_contents for video in split.video_ids)
        if by_source:
            warnings.append(
                f"warning: {by_source} of the {len(split)} {name!r} videos share a source video with the {parts.train_name!r} videos trained on "
                f"(source = video id up to the first {delimiter!r}; leak: their scores will be optimistic)"
            )
        if by_content:
            warnings.append(
                f"warning: {by_content} of the {len(split)} {name!r} videos have the same file content as a {parts.train_name!r} video trained on "
                "(a copy under another name; leak: their scores will be optimistic)"
            )
    return warnings


def _finished_seeds(out: Path, options: FitOptions, info: dict, fitting: Fitting) -> dict[int, dict]:
    """Seed -> metrics of the seed folders under ``out`` that an interrupted run finished as it would now.

    A seed counts when its folder holds every file a seed writes, with the same
    options, cache, extraction config and splits, and normalisation statistics
    equal to this fit's (so the same training videos and labels).
    """
    kept = {}
    for seed in options.run_seeds:
        folder = out / SEED_FOLDER.format(seed=seed)
        if not all((folder / name).exists() for name in (MODEL_FILE, PREDICTIONS_FILE, HISTORY_FILE, METRICS_FILE)):
            continue
        try:
            finished = open_run(folder)
            metrics = finished.metrics
        except (RunError, OptionError, OSError, ValueError, KeyError, zipfile.BadZipFile):
            continue  # damaged: fitted again
        same_data = all(
            np.array_equal(getattr(finished.normalization, name), getattr(fitting.normalization, name))
            for name in ("visual_mean", "visual_std", "audio_mean", "audio_std", "label_mean")
        )
        recorded_keys = ("cache", "config_hash", "train_split", "selection_split", "report_splits", "videos")
        if (
            finished.options == replace(options, seed=seed, seeds=(), out=str(folder))
            and all(finished.info.get(key) == info[key] for key in recorded_keys)
            and same_data
        ):
            kept[seed] = metrics
    return kept


def _run_info(options: FitOptions, data: CacheData, parts: Partition) -> dict:
    import keras

    if parts.held_out:
        selection = f"{options.validation_fraction} of the source videos of split {parts.train_name!r} held out (holdout seed {options.holdout_seed}; ids in {HOLDOUT_FILE})"
    else:
        selection = f"split {parts.selection_name!r}"
    return run_record(
        str(Path(options.cache).resolve()),
        data.config_hash,
        data.config,
        data.shape,
        train_split=parts.train_name,
        selection_split=parts.selection_name,
        report_splits=list(parts.others),
        videos={name: len(split) for name, split in parts.named().items()},
        source_videos={
            name: count_sources(split.video_ids, options.source_delimiter) for name, split in parts.named().items()
        },
        unlabelled_left_out=data.unlabelled,
        selection=selection,
        seeds=list(options.run_seeds),
        features=list(options.features),
        feature_sets={
            found.name: {"identity": found.identity, "options": found.descriptor.get("options", {})}
            for found in stored_sets(Path(options.cache))
            if found.name in options.features
        },
        versions={"keras": keras.__version__, "backend": keras.backend.backend(), "numpy": np.__version__},
    )


def _write_run_files(
    writer: FolderWriter, options: FitOptions, info: dict, fitting: Fitting, content_hashes: dict[str, str]
) -> None:
    """The files a run holds before its first epoch: options, record, training videos, normalisation, hold-out."""
    parts = fitting.parts
    writer.path.mkdir(parents=True, exist_ok=True)
    writer.write(OPTIONS_FILE, options.to_dict())
    writer.write_record(info)
    writer.write(
        TRAINING_FILE,
        {"split": parts.train_name, "videos": {str(video): content_hashes[video] for video in parts.train.video_ids}},
    )
    fitting.normalization.save(writer.path / NORMALIZATION_FILE)
    if parts.held_out:
        writer.write(
            HOLDOUT_FILE,
            {
                "split": parts.train_name,
                "validation_fraction": options.validation_fraction,
                "holdout_seed": options.holdout_seed,
                "source_delimiter": options.source_delimiter,
                "sources": sorted(set(source_ids(parts.selection.video_ids, options.source_delimiter).tolist())),
                "video_ids": [str(video_id) for video_id in parts.selection.video_ids],
            },
        )


@contextlib.contextmanager
def _precision(mixed: bool):
    import keras

    previous = keras.mixed_precision.global_policy()
    if mixed:
        keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def steps_per_execution(steps_per_epoch: int, backend: str) -> int:
    """Training steps per call into the compiled step function.

    On TensorFlow, the largest divisor of ``steps_per_epoch`` up to
    MAX_STEPS_PER_EXECUTION: fewer Python round trips per epoch, and epochs keep
    their boundaries (Keras runs whole executions, so a non-divisor would spill an
    epoch into the next one's videos). Other backends: 1 (torch allows no other).
    """
    if backend != "tensorflow":
        return 1
    return max(count for count in range(1, MAX_STEPS_PER_EXECUTION + 1) if steps_per_epoch % count == 0)


def head_metrics() -> list:
    """The per-epoch metrics: MSE, MAE, cosine similarity, mean accuracy."""
    import keras

    from train.keras_objects import mean_accuracy

    return [
        keras.metrics.MeanSquaredError(name="mse"),
        keras.metrics.MeanAbsoluteError(name="mae"),
        keras.metrics.CosineSimilarity(name="cosine_similarity"),
        keras.metrics.MeanMetricWrapper(mean_accuracy, name="mean_accuracy"),
    ]


def compile_head(model, lr: float, steps_per_epoch: int) -> None:
    """Adam on MSE, with ``head_metrics``.

    On TensorFlow, Adam runs as one fused kernel per variable (``FusedAdam``, the
    same update) and several steps go per compiled call (``steps_per_execution``).
    XLA stays at Keras' "auto" (on for accelerators): on this project's 2-core CPU
    it made batch-8 epochs slower, not faster.
    """
    import keras

    from train.keras_objects import FusedAdam

    backend = keras.backend.backend()
    model.compile(
        optimizer=FusedAdam(lr) if backend == "tensorflow" else keras.optimizers.Adam(lr),
        loss="mse",
        steps_per_execution=steps_per_execution(steps_per_epoch, backend),
        metrics=head_metrics(),
    )


def _baselines(fitting: Fitting) -> dict[str, float]:
    """What predicting the training mean scores, under the names of the per-epoch metrics (``val_`` on the selection split)."""
    label_mean = fitting.normalization.label_mean
    return {
        **baseline_scores(fitting.parts.train.labels, label_mean),
        **{f"val_{name}": value for name, value in baseline_scores(fitting.parts.selection.labels, label_mean).items()},
    }


def _baseline_line(baselines: dict[str, float]) -> str:
    """The baselines of the metrics Keras' own epoch output shows."""
    names = [f"{prefix}{name}" for prefix in ("", "val_") for name in ("loss", "mae", "mean_accuracy")]
    return "baseline (predict the training mean): " + " - ".join(f"{name} {baselines[name]:.4f}" for name in names)


def _fit_seed(options: FitOptions, fitting: Fitting, echo: Callable[[str], None]) -> dict[str, dict]:
    """Train one seed (``options.seed``) into ``options.out``, which holds its run files; score the best checkpoint on every split.

    Returns the scores with each split's role; the caller writes them (``FolderWriter.finish``) last.
    """
    import keras

    from train.evaluate import score_splits

    folder = Path(options.out)
    parts = fitting.parts
    keras.backend.clear_session()  # fresh graph state and seed generator: same seed, same run
    with _precision(options.mixed_precision):
        training = prepare_training(options, fitting)
        callbacks = [
            keras.callbacks.EarlyStopping(
                monitor=MONITOR, mode="max", patience=options.patience, restore_best_weights=True
            ),
            keras.callbacks.ReduceLROnPlateau(
                monitor=MONITOR,
                mode="max",
                patience=options.lr_patience,
                factor=options.lr_factor,
                min_lr=options.min_lr,
            ),
            keras.callbacks.ModelCheckpoint(str(folder / MODEL_FILE), monitor=MONITOR, mode="max", save_best_only=True),
            keras.callbacks.CSVLogger(str(folder / HISTORY_FILE)),
        ]
        if options.tensorboard:
            callbacks.append(keras.callbacks.TensorBoard(log_dir=str(folder / "logs")))
        echo(
            f"fitting {options.head} head, seed {options.seed}: {plural(len(parts.train), 'training video')}, selecting on {plural(len(parts.selection), 'video')} of {parts.selection_name!r} (val_ metrics), T = {fitting.shape.frames}"
        )
        baselines = _baselines(fitting)
        if options.verbose == KERAS_PROGRESS:
            echo(_baseline_line(baselines))
        elif options.verbose == EPOCH_LINES:
            callbacks.append(epoch_printer(echo, options.epochs, baselines))
        # The first step builds the graphs, when oneDNN may give its DT_HALF advice.
        with QuietStderr() as quiet:
            callbacks.append(keras.callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: quiet.release()))
            training.model.fit(
                training.stream,
                steps_per_epoch=training.steps,
                epochs=options.epochs,
                validation_data=training.validation,
                validation_batch_size=VALIDATION_BATCH,
                callbacks=callbacks,
                shuffle=False,  # training_stream shuffles, seeded
                verbose=KERAS_PROGRESS if options.verbose == KERAS_PROGRESS else 0,
            )
    best = keras.saving.load_model(folder / MODEL_FILE, compile=False, safe_mode=True)
    scores = score_splits(
        best,
        parts.named(),
        fitting.normalization,
        fitting.shape,
        predictions_path=folder / PREDICTIONS_FILE,
        targets=options.targets,
    )
    metrics = {name: {**scores[name], "role": role} for name, role in parts.roles().items()}
    history = read_history(folder / HISTORY_FILE)
    plot_curves(
        {options.seed: history},
        folder / CURVES_FILE,
        f"{options.head} head, seed {options.seed}",
        baseline_scores(parts.selection.labels, fitting.normalization.label_mean),
        parts.selection_name,
    )
    return metrics
