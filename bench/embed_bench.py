"""ResNet50 runtime benchmark: images per second of each runtime available
here at batch 32 and 224 px, and how far its outputs are from Keras float32.

Candidates, timed in interleaved rounds (one batch each per round) so the machine's
drift hits them alike:

- the runtimes of ``--runtime`` (``extract.embed.RUNTIMES``) that can run here;
  ``keras-mixed`` only with a GPU (float16 on a CPU is emulated and slow);
- two other ways to call the same Keras model, ``model(x, training=False)`` and a
  ``tf.function`` of it, against ``predict_on_batch`` (the one ``keras`` uses);
- OpenVINO float32 with its LATENCY hint (one request on all cores) against the
  THROUGHPUT hint that ``openvino`` uses (one-thread requests sharing each batch).

The input is real face crops (scikit-image's astronaut at shifted boxes); the weights
are random (``--weights none``: ImageNet weights need internet), which changes no
speed. Reports the median img/s, the ratio to Keras ``predict_on_batch`` measured in the
same run, the CPU milliseconds per image (all threads), the max abs difference to it, and whether that difference is within float16
storage precision (the condition for sharing Keras' cache config).

Run: ``python -m bench.embed_bench --out bench-out/embed.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import cv2
import numpy as np

from common.files import write_atomically
from extract.embed import (
    REDUCED_PRECISION_RUNTIMES,
    RUNTIMES,
    RuntimeUnavailableError,
    build_resnet,
    gpu_visible,
    inference_function,
    openvino_function,
    preprocess,
    resolve_runtime,
    within_float16_storage,
)
from extract.synthetic import face_image

BATCH = 32  # crops per call: the extraction default (--batch-size)
SIZE = 224  # the extraction default crop (--crop-size)
ROUNDS = 7  # timed calls per candidate; the median is reported


def face_crops(count: int, size: int) -> np.ndarray:
    """(count, size, size, 3) uint8 crops of the astronaut's face at shifted, resized boxes."""
    image = face_image()
    rng = np.random.default_rng(0)
    crops = []
    for _ in range(count):
        side = int(rng.integers(160, 240))
        x, y = int(rng.integers(110, 190)), int(rng.integers(20, 80))
        crops.append(cv2.resize(image[y : y + side, x : x + side], (size, size), interpolation=cv2.INTER_AREA))
    return np.stack(crops)


def keras_alternatives(seed: int) -> dict:
    """The same float32 Keras model called the two other usual ways."""
    import tensorflow as tf

    model = build_resnet("none", SIZE, seed)
    compiled = tf.function(
        lambda batch: model(batch, training=False), autograph=False
    )  # no Python control flow to convert
    return {
        "keras model(x)": lambda batch: np.asarray(model(batch, training=False)),
        "keras tf.function": lambda batch: compiled(tf.constant(batch)).numpy(),
    }


def candidates(seed: int) -> tuple[dict, dict]:
    """Name -> function on a preprocessed batch, and name -> why a runtime was left out."""
    functions, skipped = {}, {}
    gpu = gpu_visible()
    for runtime in RUNTIMES:
        if runtime == "auto" or (runtime == "keras-mixed" and not gpu):
            continue
        try:
            functions[runtime] = inference_function("none", SIZE, seed, runtime)
        except RuntimeUnavailableError as error:
            skipped[runtime] = str(error)
    functions.update(keras_alternatives(seed))
    if "openvino" in functions:
        functions["openvino LATENCY hint"] = openvino_function("none", SIZE, seed, "openvino", hint="LATENCY")
    return functions, skipped


def measure(seed: int = 0) -> dict:
    batch = preprocess(face_crops(BATCH, SIZE))
    functions, skipped = candidates(seed)
    outputs = {name: function(batch) for name, function in functions.items()}  # warm-up, and the outputs compared
    reference = outputs["keras"]
    times = {name: [] for name in functions}
    cpu_times = {
        name: [] for name in functions
    }  # CPU seconds of all this process's threads: what the call costs the cores
    for _ in range(ROUNDS):
        for name, function in functions.items():
            start, cpu_start = time.perf_counter(), time.process_time()
            function(batch)
            times[name].append(time.perf_counter() - start)
            cpu_times[name].append(time.process_time() - cpu_start)
    results = {}
    for name, seconds in times.items():
        difference = np.abs(outputs[name] - reference)
        results[name] = {
            "images_per_second": BATCH / statistics.median(seconds),
            "cpu_ms_per_image": 1000 * statistics.median(cpu_times[name]) / BATCH,
            "max_abs_diff_vs_keras": float(difference.max()),
            "within_float16": within_float16_storage(outputs[name], reference),
            "float32": name not in REDUCED_PRECISION_RUNTIMES,
        }
    keras_rate = results["keras"]["images_per_second"]
    for result in results.values():
        result["ratio_to_keras"] = result["images_per_second"] / keras_rate
    return {
        "batch": BATCH,
        "crop_size": SIZE,
        "rounds": ROUNDS,
        "gpu": gpu_visible(),
        "max_keras_output": float(np.abs(reference).max()),
        "auto_resolves_to": resolve_runtime("auto"),
        "skipped": skipped,
        "runtimes": results,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench-out/embed.json"))
    arguments = parser.parse_args()
    report = measure()
    arguments.out.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(arguments.out, json.dumps(report, indent=1))
    print(
        f"ResNet50 batch {BATCH} at {SIZE} px, median of {ROUNDS} interleaved calls; GPU: {report['gpu']}; auto = {report['auto_resolves_to']}"
    )
    print(f"{'runtime':<26}{'img/s':>8}{'x keras':>9}{'CPU ms/img':>11}{'max|diff|':>11}  same cache (within float16)")
    for name, result in report["runtimes"].items():
        same = (
            "yes"
            if result["within_float16"] and result["float32"]
            else "no: recorded in the config"
            if not result["float32"]
            else "NO"
        )
        print(
            f"{name:<26}{result['images_per_second']:8.1f}{result['ratio_to_keras']:9.2f}{result['cpu_ms_per_image']:11.1f}{result['max_abs_diff_vs_keras']:11.2e}  {same}"
        )
    for name, reason in report["skipped"].items():
        print(f"{name:<26} skipped: {reason}")
    print(f"(outputs up to {report['max_keras_output']:.1f}; written to {arguments.out})")


if __name__ == "__main__":
    main()
