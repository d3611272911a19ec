"""Fit a head from the cache into a run folder, and report its scores."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import shutil
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from cache.manifest import plural
from cache.reader import CacheReader
from train.config import FitOptions
from train.data import (
    CacheData,
    Normalization,
    Partition,
    centre_frames,
    count_sources,
    fit_normalization,
    load_cache,
    model_inputs,
    partition,
    resolve_splits,
    source_ids,
    training_stream,
)
from train.metrics import aggregate_seeds, format_table
from train.predictions import PREDICTIONS_FILE
from train.report import plot_curves, read_history, write_combined_history
from train.run import (
    CURVES_FILE,
    HISTORY_FILE,
    HOLDOUT_FILE,
    METRICS_FILE,
    MODEL_FILE,
    NORMALIZATION_FILE,
    OPTIONS_FILE,
    RUN_FILE,
    SEED_FOLDER,
    RunError,
    weights_warning,
    write_json,
)

MONITOR = "val_mean_accuracy"  # the ChaLearn metric selects, stops and lowers the rate
VALIDATION_BATCH = 256  # videos per validation step: larger than training batches, same result
FEW_TRAINING_VIDEOS = 20  # below this many training videos a head's scores are noise: warn
MAX_STEPS_PER_EXECUTION = (
    32  # batches per compiled call on TensorFlow; callbacks act per epoch, so nothing waits on a step
)


def fit(options: FitOptions, echo: Callable[[str], None] = print) -> dict[str, dict]:
    """Train ``options.head`` on the cache, once per seed, into ``options.out``.

    Parameters
    ----------
    options : FitOptions
    echo : callable
        Receives each line of the report (splits used, metrics tables, warnings).

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
    cache.errors.CacheError
        The cache is missing or damaged.
    train.data.SplitNameError
        ``train_split`` or ``validation_split`` names a split the cache lacks.
    train.data.DataError
        The cache has no usable training data.
    """
    out = Path(options.out)
    _check_folder(out, options.overwrite)
    reader = CacheReader(Path(options.cache))
    if reader.splits():
        resolve_splits(list(reader.splits()), options.train_split, options.validation_split, kind="split")
    started = time.perf_counter()
    data = load_cache(reader)
    parts = partition(
        data.splits,
        options.train_split,
        options.validation_split,
        options.validation_fraction,
        options.holdout_seed,
        options.source_delimiter,
    )
    echo(
        f"read {plural(sum(len(split) for split in data.splits.values()), 'labelled video')} from {options.cache} in {time.perf_counter() - started:.1f} s"
    )
    if sum(data.unlabelled.values()):
        echo(f"left out {plural(sum(data.unlabelled.values()), 'video')} lacking some of the five trait labels")
    for line in describe_partition(parts, options):
        echo(line)
    normalization = fit_normalization(parts.train)
    warnings = data_warnings(parts, normalization)
    for warning in warnings:
        echo(warning)
    # Only now that the cache proved usable may --overwrite remove the old run.
    _clear_folder(out)
    info = _run_info(options, data, parts)
    seeds = options.run_seeds
    if len(seeds) == 1:
        metrics = _fit_seed(options, seeds[0], data, parts, normalization, info, echo)
        best = metrics[parts.selection_name]
    else:
        # The top folder is a run from the start, so a crash leaves it replaceable with --overwrite.
        _write_run_files(out, options, info, normalization, parts)
        per_seed, histories = {}, {}
        for seed in seeds:
            folder = out / SEED_FOLDER.format(seed=seed)
            seed_options = dataclasses.replace(options, seed=seed, seeds=(), out=str(folder))
            per_seed[seed] = _fit_seed(seed_options, seed, data, parts, normalization, {**info, "seeds": [seed]}, echo)
            histories[seed] = read_history(folder / HISTORY_FILE)
        metrics = aggregate_seeds(per_seed)
        selected = max(seeds, key=lambda seed: per_seed[seed][parts.selection_name]["mean_accuracy"])
        best = per_seed[selected][parts.selection_name]
        info = {**info, "selected_seed": selected}
        shutil.copy2(out / SEED_FOLDER.format(seed=selected) / MODEL_FILE, out / MODEL_FILE)
        shutil.copy2(
            out / SEED_FOLDER.format(seed=selected) / PREDICTIONS_FILE, out / PREDICTIONS_FILE
        )  # the predictions of that model
        write_combined_history(histories, out / HISTORY_FILE)
        plot_curves(
            histories,
            out / CURVES_FILE,
            f"{options.head} head, seeds {', '.join(map(str, seeds))}",
            _selection_baselines(parts, normalization),
            parts.selection_name,
        )
        echo(
            f"\nmean ± std over seeds {', '.join(map(str, seeds))}; {MODEL_FILE} is seed {selected} (best {parts.selection_name!r} mean accuracy)"
        )
    if best["mean_accuracy"] < best["baseline_mean_accuracy"]:
        warnings.append(
            f"warning: the best {parts.selection_name!r} mean accuracy, {best['mean_accuracy']:.4f}, is below the baseline of predicting the training mean, "
            f"{best['baseline_mean_accuracy']:.4f}: this head learned nothing useful here"
        )
    write_json(out / RUN_FILE, {**info, "warnings": warnings})
    if len(seeds) > 1:
        write_json(out / METRICS_FILE, metrics)  # last: metrics.json marks a finished run
    echo(format_table(metrics))
    for warning in ([info["warning"]] if info["warning"] else []) + warnings:
        echo(warning)
    echo(f"run saved to {out}")
    return metrics


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


def data_warnings(parts: Partition, normalization: Normalization) -> list[str]:
    """Warnings about training data that cannot give a useful head."""
    warnings = []
    if len(parts.train) < FEW_TRAINING_VIDEOS:
        warnings.append(
            f"warning: only {plural(len(parts.train), 'training video')}; with fewer than {FEW_TRAINING_VIDEOS} the scores are noise"
        )
    if 1.0 - np.mean(np.abs(parts.train.labels - normalization.label_mean)) == 1.0:
        warnings.append(
            "warning: every training video has the same five trait scores (train baseline 1.0000): the labels are degenerate; check the label file"
        )
    return warnings


def _check_folder(out: Path, overwrite: bool) -> None:
    if out.is_file():
        raise RunError(f"{out}: is a file, not a run folder; choose another --out")
    if out.exists() and any(out.iterdir()):
        if not (out / OPTIONS_FILE).exists():
            raise RunError(f"{out}: folder is not empty and holds no run; choose another --out")
        if not overwrite:
            raise RunError(f"{out}: already holds a run; pass --overwrite to replace it or choose another --out")


def _clear_folder(out: Path) -> None:
    """Remove the run ``_check_folder`` allowed to be replaced, and make the folder."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)


def _run_info(options: FitOptions, data: CacheData, parts: Partition) -> dict:
    import keras

    if parts.held_out:
        selection = f"{options.validation_fraction} of the source videos of split {parts.train_name!r} held out (holdout seed {options.holdout_seed}; ids in {HOLDOUT_FILE})"
    else:
        selection = f"split {parts.selection_name!r}"
    return {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "cache": str(Path(options.cache).resolve()),
        "config_hash": data.config_hash,
        "extraction_config": data.config,
        "frames": data.frames,
        "frames_per_segment": data.frames_per_segment,
        "train_split": parts.train_name,
        "selection_split": parts.selection_name,
        "report_splits": list(parts.others),
        "videos": {name: len(split) for name, split in parts.named().items()},
        "source_videos": {
            name: count_sources(split.video_ids, options.source_delimiter) for name, split in parts.named().items()
        },
        "unlabelled_left_out": data.unlabelled,
        "selection": selection,
        "warning": weights_warning(data.config),
        "seeds": list(options.run_seeds),
        "versions": {"keras": keras.__version__, "backend": keras.backend.backend(), "numpy": np.__version__},
    }


def _write_run_files(
    folder: Path, options: FitOptions, info: dict, normalization: Normalization, parts: Partition
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / OPTIONS_FILE, options.to_dict())
    write_json(folder / RUN_FILE, info)
    normalization.save(folder / NORMALIZATION_FILE)
    if parts.held_out:
        write_json(
            folder / HOLDOUT_FILE,
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


def _selection_baselines(parts: Partition, normalization: Normalization) -> dict[str, float]:
    errors = parts.selection.labels - normalization.label_mean
    return {"loss": float(np.mean(errors**2)), "mean_accuracy": float(1 - np.mean(np.abs(errors)))}


def _baseline_line(parts: Partition, normalization: Normalization) -> str:
    """The per-epoch metrics' baseline: what predicting the training mean scores."""
    figures = []
    for name, split in (("", parts.train), ("val_", parts.selection)):
        errors = split.labels - normalization.label_mean
        figures.append(
            f"{name}loss {np.mean(errors**2):.4f} - {name}mae {np.mean(np.abs(errors)):.4f} - {name}mean_accuracy {1 - np.mean(np.abs(errors)):.4f}"
        )
    return "baseline (predict the training mean): " + " - ".join(figures)


def _fit_seed(
    options: FitOptions,
    seed: int,
    data: CacheData,
    parts: Partition,
    normalization: Normalization,
    info: dict,
    echo: Callable[[str], None],
) -> dict[str, dict]:
    """Train one seed into ``options.out``; score the best checkpoint on every split."""
    import keras

    from train.evaluate import score_splits
    from train.model import build_head, input_names

    folder = Path(options.out)
    _write_run_files(folder, options, info, normalization, parts)
    keras.backend.clear_session()  # fresh graph state and seed generator: same seed, same run
    keras.utils.set_random_seed(seed)
    with _precision(options.mixed_precision):
        model = build_head(options.head, data.frames, options)
        names = tuple(input_names(model))
        steps = math.ceil(len(parts.train) / options.batch_size)
        compile_head(model, options.lr, steps)
        selection = parts.selection
        rows = np.arange(len(selection))
        selection_inputs = model_inputs(
            selection, rows, centre_frames(len(selection), data.frames, data.frames_per_segment), normalization, names
        )
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
            f"fitting {options.head} head, seed {seed}: {plural(len(parts.train), 'training video')}, selecting on {plural(len(selection), 'video')} of {parts.selection_name!r} (val_ metrics), T = {data.frames}"
        )
        echo(_baseline_line(parts, normalization))
        model.fit(
            training_stream(
                parts.train,
                normalization,
                data.frames,
                data.frames_per_segment,
                options.batch_size,
                seed,
                names,
                keras.backend.backend(),
            ),
            steps_per_epoch=steps,
            epochs=options.epochs,
            validation_data=(selection_inputs, selection.labels),
            validation_batch_size=VALIDATION_BATCH,
            callbacks=callbacks,
            shuffle=False,  # training_stream shuffles, seeded
            verbose=options.verbose,
        )
    best = keras.saving.load_model(folder / MODEL_FILE, compile=False, safe_mode=True)
    scores = score_splits(
        best,
        parts.named(),
        normalization,
        data.frames,
        data.frames_per_segment,
        predictions_path=folder / PREDICTIONS_FILE,
    )
    metrics = {name: {**scores[name], "role": role} for name, role in parts.roles().items()}
    write_json(folder / METRICS_FILE, metrics)
    history = read_history(folder / HISTORY_FILE)
    plot_curves(
        {seed: history},
        folder / CURVES_FILE,
        f"{options.head} head, seed {seed}",
        _selection_baselines(parts, normalization),
        parts.selection_name,
    )
    return metrics
