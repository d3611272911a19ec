"""Training benchmark (``make bench``): seconds per epoch of each head, fit's input path against today's, cache load time.

Writes a synthetic cache shaped like ChaLearn's training split (6000 videos, T = 10,
2048-d float16 embeddings) plus a validation split, with real HDF5 shards through
CacheWriter; then times reading it into memory (what ``train fit`` does once) and
``--epochs`` epochs of every head at its default sizes (batch 8, as the original),
validation included, after a short untimed warm-up that traces the graphs (its
seconds are reported apart).

The input-path comparison trains the seed head at batch 8 twice, epoch for epoch in
turn so that machine drift hits both alike: fit's path (``train.fit.prepare_training``:
``train.batches.training_stream`` and ``train.fit.compile_head``) and, as the reference,
the path before it: the seed head with TimeDistributed per-frame layers, the numpy
generator ``training_batches`` handed to Keras, Keras' own Adam, one step per compiled
call. The limit is SPEED_LIMIT times the reference. Run: ``python -m bench.train_bench --out FILE.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from cache.reader import CacheReader
from cache.schema import AUDIO_DIM, EMBEDDING_DIM
from common.options import replace
from train.batches import training_batches
from train.config import HEADS, FitOptions
from train.dataset import load_cache
from train.fit import (
    VALIDATION_BATCH,
    Fitting,
    Training,
    head_metrics,
    prepare_fitting,
    prepare_training,
    selection_data,
)
from train.metrics import aligned
from train.model import input_names
from train.synthetic import write_synthetic_cache

TRAIN_VIDEOS = 6000  # ChaLearn's training split
VALIDATION_VIDEOS = 600  # a tenth of it: validation runs every epoch, so it is part of the cost
FRAMES = 10  # T of the reference extraction
SPEED_LIMIT = 0.7  # issue 10: fit's batch-8 epoch must take at most 0.7x the generator path's
COMPARED_HEAD = "seed"  # the head the issue measured


def folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.iterdir() if path.is_file())


def device_names() -> list[str]:
    """Accelerators Keras will use (empty on a CPU-only machine)."""
    import keras

    if keras.backend.backend() != "tensorflow":
        return []
    import tensorflow

    return [device.name for device in tensorflow.config.list_physical_devices("GPU")]


def reference_seed_head(frames: int, options: FitOptions):
    """The seed head as ``train.model`` built it before: per-frame layers wrapped in TimeDistributed.

    The same function and weights as today's seed head; Keras 3 runs each
    TimeDistributed(Dense) as T matmuls of ``batch`` rows. Kept here only as the
    reference of the input-path comparison.
    """
    import keras

    layers = keras.layers
    visual = keras.Input((frames, EMBEDDING_DIM), name="visual")
    audio = keras.Input((frames, AUDIO_DIM), name="audio")
    stream = layers.TimeDistributed(layers.Dense(options.visual_units, activation="relu"), name="visual_dense")(visual)
    stream = layers.TimeDistributed(layers.Dense(options.visual_projection), name="visual_projection")(stream)
    stream = layers.TimeDistributed(layers.Dropout(options.dropout), name="visual_dropout")(stream)
    sequence = layers.Concatenate(name="fuse")(
        [stream, layers.TimeDistributed(layers.Dense(options.audio_units), name="audio_dense")(audio)]
    )
    scores = layers.Dense(5, activation="sigmoid", name="scores")(
        layers.LSTM(options.lstm_units, return_sequences=True, name="lstm")(sequence)
    )
    return keras.Model(
        [visual, audio], layers.GlobalAveragePooling1D(name="average_over_time")(scores), name="reference_seed_head"
    )


def reference_training(options: FitOptions, fitting: Fitting) -> Training:
    """The reference of the input-path comparison: the seed head on the path before fit's.

    TimeDistributed per-frame layers, the numpy generator handed to Keras, Keras'
    Adam, one step per compiled call; seeded, data and validation as fit's.
    """
    import keras

    keras.utils.set_random_seed(options.seed)
    model = reference_seed_head(fitting.shape.frames, options)
    model.compile(optimizer=keras.optimizers.Adam(options.lr), loss="mse", metrics=head_metrics())
    names = tuple(input_names(model))
    stream = training_batches(fitting.parts.train, fitting.normalization, fitting.shape, options, names)
    steps = math.ceil(len(fitting.parts.train) / options.batch_size)
    return Training(model, steps, stream, selection_data(fitting, names))


def warm_up(training: Training) -> float:
    """Seconds of one execution (one step, or several on TensorFlow) and one validation pass, which trace every function."""
    started = time.perf_counter()
    training.model.fit(
        training.stream,
        steps_per_epoch=training.model.steps_per_execution,
        epochs=1,
        validation_data=training.validation,
        validation_batch_size=VALIDATION_BATCH,
        shuffle=False,
        verbose=0,
    )
    return time.perf_counter() - started


def time_epochs(training: Training, count: int, cpu_seconds: list[float] | None = None) -> list[float]:
    """Seconds of each of ``count`` epochs, training and validation; their process CPU seconds go to ``cpu_seconds``."""
    import keras

    seconds: list[float] = []
    cpu = [] if cpu_seconds is None else cpu_seconds

    class EpochTimer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.started = (time.perf_counter(), time.process_time())

        def on_epoch_end(self, epoch, logs=None):
            seconds.append(time.perf_counter() - self.started[0])
            cpu.append(time.process_time() - self.started[1])

    training.model.fit(
        training.stream,
        steps_per_epoch=training.steps,
        epochs=count,
        validation_data=training.validation,
        validation_batch_size=VALIDATION_BATCH,
        callbacks=[EpochTimer()],
        shuffle=False,
        verbose=0,
    )
    return seconds


def time_head(head: str, fitting: Fitting, options: FitOptions, epochs: int) -> dict:
    """Seconds of each epoch (training and validation) of one head, on fit's path."""
    import keras

    keras.backend.clear_session()
    training = prepare_training(replace(options, head=head), fitting)
    warm_up_seconds = warm_up(training)
    epoch_seconds = time_epochs(training, epochs)
    seconds = float(np.median(epoch_seconds))
    return {
        "parameters": training.model.count_params(),
        "steps_per_epoch": training.steps,
        "warm_up_seconds": warm_up_seconds,
        "epoch_seconds": epoch_seconds,
        "seconds_per_epoch": seconds,
        "milliseconds_per_step": 1000 * seconds / training.steps,
    }


def compare_paths(fitting: Fitting, options: FitOptions, rounds: int) -> dict:
    """Epochs of fit's path and of the reference path, in turn; the ratio of their medians.

    Process CPU seconds are recorded beside wall seconds: on a shared machine they
    drift less with other people's load.
    """
    import keras

    keras.backend.clear_session()
    options = replace(options, head=COMPARED_HEAD)
    trainings = {"reference": reference_training(options, fitting), "fit": prepare_training(options, fitting)}
    for training in trainings.values():
        warm_up(training)
    seconds: dict[str, list[float]] = {name: [] for name in trainings}
    cpu_seconds: dict[str, list[float]] = {name: [] for name in trainings}
    load = [os.getloadavg()[0]]
    for _ in range(rounds):
        for name, training in trainings.items():
            seconds[name] += time_epochs(training, 1, cpu_seconds[name])
        load.append(os.getloadavg()[0])
    medians = {name: float(np.median(values)) for name, values in seconds.items()}
    cpu_medians = {name: float(np.median(values)) for name, values in cpu_seconds.items()}
    ratio = medians["fit"] / medians["reference"]
    return {
        "head": COMPARED_HEAD,
        "steps_per_execution": trainings["fit"].model.steps_per_execution,
        "epoch_seconds": seconds,
        "seconds_per_epoch": medians,
        "epoch_cpu_seconds": cpu_seconds,
        "cpu_seconds_per_epoch": cpu_medians,
        "load_average": load,
        "ratio": ratio,
        "cpu_ratio": cpu_medians["fit"] / cpu_medians["reference"],
        "limit": SPEED_LIMIT,
        "passed": ratio <= SPEED_LIMIT,
    }


def run(
    videos: int,
    validation_videos: int,
    frames: int,
    epochs: int,
    heads: tuple[str, ...],
    rounds: int,
    cache_dir: Path | None,
) -> dict:
    import keras

    scratch = None
    if cache_dir is None:
        scratch = Path(tempfile.mkdtemp(prefix="train-bench-"))
        cache_dir = scratch / "cache"
    try:
        write_seconds = None
        if not (cache_dir / "config.json").exists():
            started = time.perf_counter()
            write_synthetic_cache(cache_dir, {"train": videos, "validation": validation_videos}, frames=frames)
            write_seconds = time.perf_counter() - started
        started = time.perf_counter()
        data = load_cache(CacheReader(cache_dir))
        load_seconds = time.perf_counter() - started
        options = FitOptions()
        fitting = prepare_fitting(data, options)
        comparison = compare_paths(fitting, options, rounds) if rounds else None
        results = {head: time_head(head, fitting, options, epochs) for head in heads}
        return {
            "machine": {
                "cpus": os.cpu_count(),
                "keras": keras.__version__,
                "backend": keras.backend.backend(),
                "accelerators": device_names(),
            },
            "cache": {
                "train_videos": len(fitting.parts.train),
                "validation_videos": len(fitting.parts.selection),
                "frames": data.shape.frames,
                "bytes": folder_bytes(cache_dir),
                "write_seconds": write_seconds,
                "load_seconds": load_seconds,
                "in_memory_bytes": sum(
                    split.visual.nbytes + split.audio.nbytes + split.face.nbytes for split in data.splits.values()
                ),
            },
            "batch_size": options.batch_size,
            "epochs": epochs,
            "input_paths": comparison,
            "heads": results,
        }
    finally:
        if scratch is not None:
            shutil.rmtree(scratch)


def table(result: dict) -> str:
    cache = result["cache"]
    lines = [
        f"cache: {cache['train_videos']} + {cache['validation_videos']} videos, T = {cache['frames']}, {cache['bytes'] / 1e6:.0f} MB on disk; "
        f"loaded into memory in {cache['load_seconds']:.1f} s ({cache['in_memory_bytes'] / 1e6:.0f} MB)",
        f"machine: {result['machine']['cpus']} CPUs, accelerators: {', '.join(result['machine']['accelerators']) or 'none'}; batch {result['batch_size']}",
        "",
    ]
    rows = [("head", "parameters", "warm-up s", "s per epoch", "ms per step")]
    for head, timing in result["heads"].items():
        rows.append(
            (
                head,
                f"{timing['parameters']:,}",
                f"{timing['warm_up_seconds']:.1f}",
                f"{timing['seconds_per_epoch']:.1f}",
                f"{timing['milliseconds_per_step']:.1f}",
            )
        )
    text = "\n".join(lines) + aligned(rows)
    comparison = result["input_paths"]
    if comparison:
        seconds = comparison["seconds_per_epoch"]
        verdict = "within" if comparison["passed"] else "OVER"
        text += (
            f"\n\ninput paths, {comparison['head']} head, batch {result['batch_size']}, {len(comparison['epoch_seconds']['fit'])} epochs each in turn (median s per epoch):"
            f"\n  reference (TimeDistributed, numpy generator, Keras Adam, one step per call) {seconds['reference']:.2f}  fit's path {seconds['fit']:.2f}"
            f"  ratio {comparison['ratio']:.2f}, {verdict} the limit {comparison['limit']}"
            f"\n  CPU s per epoch: reference {comparison['cpu_seconds_per_epoch']['reference']:.2f}  fit's path {comparison['cpu_seconds_per_epoch']['fit']:.2f}"
            f"  ratio {comparison['cpu_ratio']:.2f}; 1-minute load average {min(comparison['load_average']):.1f}-{max(comparison['load_average']):.1f} on {result['machine']['cpus']} CPUs"
        )
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="JSON file to write")
    parser.add_argument("--videos", type=int, default=TRAIN_VIDEOS, help="training videos in the synthetic cache")
    parser.add_argument("--validation-videos", type=int, default=VALIDATION_VIDEOS)
    parser.add_argument("--frames", type=int, default=FRAMES, help="T")
    parser.add_argument(
        "--epochs", type=int, default=1, help="timed epochs per head (median reported), after an untimed warm-up"
    )
    parser.add_argument("--heads", default=",".join(HEADS), help="comma-separated heads")
    parser.add_argument(
        "--rounds", type=int, default=3, help="epochs of each input path, taken in turn (0: skip the comparison)"
    )
    parser.add_argument(
        "--cache-dir", type=Path, help="keep (or reuse) the synthetic cache here instead of a temporary folder"
    )
    arguments = parser.parse_args()
    heads = tuple(head for head in arguments.heads.split(",") if head)
    unknown = [head for head in heads if head not in HEADS]
    if unknown:
        parser.error(f"unknown head(s) {', '.join(unknown)}; heads are {', '.join(HEADS)}")
    result = run(
        arguments.videos,
        arguments.validation_videos,
        arguments.frames,
        arguments.epochs,
        heads,
        arguments.rounds,
        arguments.cache_dir,
    )
    print(table(result))
    if arguments.out:
        arguments.out.parent.mkdir(parents=True, exist_ok=True)
        arguments.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
