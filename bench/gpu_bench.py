"""GPU benchmark (``make bench-gpu``): ResNet50 embedding on the GPU at several batch sizes.

For ``--runtime keras`` (float32, TensorFloat-32 off: the same cache as a CPU) and
``--runtime keras-mixed`` (float16 compute: a cache config of its own), at each batch
size it reports:

- images per second, host arrays in and out as in the extraction (``predict_on_batch``);
- clips per second of the embedding step alone, at 10 crops per clip (T, ``--frames``);
- how busy the GPU was: the mean of ``nvidia-smi`` utilization samples taken every
  100 ms while that batch size ran;
- the max abs difference to the same model run on the CPU, and whether the float32
  runtime stays within float16 storage precision of it (the condition for sharing
  the CPU's cache config).

Exits with a message when TensorFlow sees no GPU. Install the GPU build first:
``pip install -e ".[gpu]"``.

Run: ``python -m bench.gpu_bench --out bench-out/gpu.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from bench.embed_bench import face_crops
from common.files import write_atomically
from extract.embed import build_resnet, gpu_visible, inference_function, preprocess, within_float16_storage

BATCH_SIZES = (32, 64, 128, 256)  # 32 is the extraction default; larger ones show where the GPU saturates
CROPS_PER_CLIP = 10  # T, the extraction default --frames
SIZE = 224  # the extraction default --crop-size
MIN_SECONDS = 3.0  # timed calls per batch size run at least this long, so 100 ms samples average out
MIN_CALLS = 5
SAMPLE_MILLISECONDS = 100  # nvidia-smi sampling period
RUNTIMES = ("keras", "keras-mixed")


class UtilizationSampler:
    """``nvidia-smi`` GPU utilization (%) sampled in the background, with timestamps."""

    def __init__(self, gpu_index: str):
        self.samples: list[tuple[float, float]] = []
        self.process = subprocess.Popen(
            [
                "nvidia-smi",
                "-i",
                gpu_index,
                "--query-gpu=utilization.gpu",
                "--format=csv,noheader,nounits",
                "-lms",
                str(SAMPLE_MILLISECONDS),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            try:
                self.samples.append((time.perf_counter(), float(line.strip())))
            except ValueError:
                continue  # "[N/A]" on GPUs that do not report utilization

    def mean_between(self, start: float, end: float) -> float | None:
        values = [value for moment, value in list(self.samples) if start <= moment <= end]
        return statistics.fmean(values) if values else None

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)
        self.thread.join(timeout=10)


def time_batch_size(function, batch: np.ndarray) -> tuple[float, float, float]:
    """(images per second, start, end) of repeated calls on one batch after two warm-up calls."""
    function(batch)
    function(batch)
    calls = 0
    start = time.perf_counter()
    while calls < MIN_CALLS or time.perf_counter() - start < MIN_SECONDS:
        function(batch)
        calls += 1
    end = time.perf_counter()
    return calls * len(batch) / (end - start), start, end


def cpu_reference(weights: str, batch: np.ndarray) -> np.ndarray:
    """The float32 model's outputs computed on the CPU."""
    import tensorflow as tf

    with tf.device("/CPU:0"):
        return np.asarray(build_resnet(weights, SIZE)(batch, training=False))


def measure(weights: str) -> dict:
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    details = tf.config.experimental.get_device_details(gpus[0])
    gpu_index = os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0]  # nvidia-smi ignores CUDA_VISIBLE_DEVICES
    sampler = UtilizationSampler(gpu_index) if shutil.which("nvidia-smi") else None
    crops = preprocess(face_crops(max(BATCH_SIZES), SIZE))
    reference = cpu_reference(weights, crops[: BATCH_SIZES[0]])
    report = {
        "gpu": details.get("device_name", gpus[0].name),
        "gpus_visible": len(gpus),
        "weights": weights,
        "crops_per_clip": CROPS_PER_CLIP,
        "runtimes": {},
    }
    try:
        for runtime in RUNTIMES:
            function = inference_function(weights, SIZE, 0, runtime)
            outputs = function(crops[: BATCH_SIZES[0]])
            rows = []
            for batch_size in BATCH_SIZES:
                rate, start, end = time_batch_size(function, crops[:batch_size])
                busy = sampler.mean_between(start, end) if sampler else None
                rows.append(
                    {
                        "batch": batch_size,
                        "images_per_second": rate,
                        "clips_per_second": rate / CROPS_PER_CLIP,
                        "gpu_busy_percent": busy,
                    }
                )
            report["runtimes"][runtime] = {
                "max_abs_diff_vs_cpu": float(np.abs(outputs - reference).max()),
                "within_float16_of_cpu": within_float16_storage(outputs, reference),
                "batches": rows,
            }
    finally:
        if sampler:
            sampler.stop()
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench-out/gpu.json"))
    parser.add_argument(
        "--weights", default="none", help="imagenet | none | PATH; the speed does not depend on the values"
    )
    arguments = parser.parse_args()
    if not gpu_visible():
        sys.exit(
            "bench-gpu: TensorFlow sees no GPU, so there is nothing to measure. On a machine with an NVIDIA GPU and driver, "
            'install TensorFlow with CUDA (pip install -e ".[gpu]") and check with: '
            "python -c \"import tensorflow as tf; print(tf.config.list_physical_devices('GPU'))\""
        )
    report = measure(arguments.weights)
    arguments.out.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(arguments.out, json.dumps(report, indent=1))
    print(
        f"ResNet50 at {SIZE} px on {report['gpu']} ({report['gpus_visible']} GPU(s) visible; one used); clips/s = img/s / {CROPS_PER_CLIP}"
    )
    for runtime, result in report["runtimes"].items():
        same = "same cache as CPU" if result["within_float16_of_cpu"] else "differs from CPU beyond float16"
        print(f"{runtime}: max |diff| vs CPU {result['max_abs_diff_vs_cpu']:.2e} ({same})")
        print(f"  {'batch':>6}{'img/s':>10}{'clips/s':>10}{'GPU busy %':>12}")
        for row in result["batches"]:
            busy = "n/a" if row["gpu_busy_percent"] is None else f"{row['gpu_busy_percent']:.0f}"
            print(f"  {row['batch']:>6}{row['images_per_second']:10.1f}{row['clips_per_second']:10.1f}{busy:>12}")
    print(f"written to {arguments.out}")


if __name__ == "__main__":
    main()
