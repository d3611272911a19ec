"""Training benchmark (``make bench``): seconds per epoch of each head, and cache load time.

Writes a synthetic cache shaped like ChaLearn's training split (6000 videos, T = 10,
2048-d float16 embeddings) plus a validation split, with real HDF5 shards through
CacheWriter; then times reading it into memory (what ``train fit`` does once) and
``--epochs`` epochs of every head at its default sizes (batch 8, as the original),
validation included, after a short untimed warm-up that traces the graphs (its
seconds are reported apart). Run: ``python -m bench.train_bench --out FILE.json``.
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
from train.config import HEADS, FitOptions
from train.data import centre_frames, fit_normalization, load_cache, model_inputs, partition, training_batches
from train.fit import VALIDATION_BATCH, compile_head
from train.metrics import aligned
from train.model import build_head, input_names
from train.synthetic import write_synthetic_cache

TRAIN_VIDEOS = 6000  # ChaLearn's training split
VALIDATION_VIDEOS = 600  # a tenth of it: validation runs every epoch, so it is part of the cost
FRAMES = 10  # T of the reference extraction
WARM_UP_STEPS = 2  # untimed training steps before the timed epochs


def folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.iterdir() if path.is_file())


def device_names() -> list[str]:
    """Accelerators Keras will use (empty on a CPU-only machine)."""
    import keras

    if keras.backend.backend() != "tensorflow":
        return []
    import tensorflow

    return [device.name for device in tensorflow.config.list_physical_devices("GPU")]


def time_head(head: str, data, parts, normalization, options: FitOptions, epochs: int) -> dict:
    """Seconds of each epoch (training and validation) of one head."""
    import keras

    keras.backend.clear_session()
    keras.utils.set_random_seed(options.seed)
    model = build_head(head, data.frames, options)
    compile_head(model, options.lr)
    names = tuple(input_names(model))
    validation = parts.validation
    validation_inputs = model_inputs(validation, np.arange(len(validation)), centre_frames(len(validation), data.frames, data.frames_per_segment), normalization, names)
    epoch_seconds: list[float] = []

    class EpochTimer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            epoch_seconds.append(time.perf_counter() - self.started)

    def batches():
        return training_batches(parts.train, normalization, data.frames, data.frames_per_segment, options.batch_size, options.seed, names)

    validation_data = (validation_inputs, validation.labels)
    started = time.perf_counter()
    # A few steps and one validation pass trace every function, so the timed epochs are the steady cost.
    model.fit(batches(), steps_per_epoch=WARM_UP_STEPS, epochs=1, validation_data=validation_data, validation_batch_size=VALIDATION_BATCH, shuffle=False, verbose=0)
    warm_up_seconds = time.perf_counter() - started
    steps = math.ceil(len(parts.train) / options.batch_size)
    model.fit(batches(), steps_per_epoch=steps, epochs=epochs, validation_data=validation_data, validation_batch_size=VALIDATION_BATCH, callbacks=[EpochTimer()], shuffle=False, verbose=0)
    seconds = float(np.median(epoch_seconds))
    return {
        "parameters": model.count_params(),
        "steps_per_epoch": steps,
        "warm_up_seconds": warm_up_seconds,
        "epoch_seconds": epoch_seconds,
        "seconds_per_epoch": seconds,
        "milliseconds_per_step": 1000 * seconds / steps,
    }


def run(videos: int, validation_videos: int, frames: int, epochs: int, heads: tuple[str, ...], cache_dir: Path | None) -> dict:
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
        parts = partition(data.splits, "train", "validation", 0.1, 0)
        normalization = fit_normalization(parts.train)
        options = FitOptions()
        results = {head: time_head(head, data, parts, normalization, options, epochs) for head in heads}
        return {
            "machine": {"cpus": os.cpu_count(), "keras": keras.__version__, "backend": keras.backend.backend(), "accelerators": device_names()},
            "cache": {
                "train_videos": len(parts.train),
                "validation_videos": len(parts.validation),
                "frames": data.frames,
                "bytes": folder_bytes(cache_dir),
                "write_seconds": write_seconds,
                "load_seconds": load_seconds,
                "in_memory_bytes": sum(split.visual.nbytes + split.audio.nbytes + split.face.nbytes for split in data.splits.values()),
            },
            "batch_size": options.batch_size,
            "epochs": epochs,
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
        rows.append((head, f"{timing['parameters']:,}", f"{timing['warm_up_seconds']:.1f}", f"{timing['seconds_per_epoch']:.1f}", f"{timing['milliseconds_per_step']:.1f}"))
    return "\n".join(lines) + aligned(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="JSON file to write")
    parser.add_argument("--videos", type=int, default=TRAIN_VIDEOS, help="training videos in the synthetic cache")
    parser.add_argument("--validation-videos", type=int, default=VALIDATION_VIDEOS)
    parser.add_argument("--frames", type=int, default=FRAMES, help="T")
    parser.add_argument("--epochs", type=int, default=1, help="timed epochs per head (median reported), after an untimed warm-up")
    parser.add_argument("--heads", default=",".join(HEADS), help="comma-separated heads")
    parser.add_argument("--cache-dir", type=Path, help="keep (or reuse) the synthetic cache here instead of a temporary folder")
    arguments = parser.parse_args()
    heads = tuple(head for head in arguments.heads.split(",") if head)
    unknown = [head for head in heads if head not in HEADS]
    if unknown:
        parser.error(f"unknown head(s) {', '.join(unknown)}; heads are {', '.join(HEADS)}")
    result = run(arguments.videos, arguments.validation_videos, arguments.frames, arguments.epochs, heads, arguments.cache_dir)
    print(table(result))
    if arguments.out:
        arguments.out.parent.mkdir(parents=True, exist_ok=True)
        arguments.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
