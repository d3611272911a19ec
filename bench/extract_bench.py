"""Extraction benchmark (``make bench``): where the seconds of one video go.

Measures, on a generated 15 s 1280x720 h264 + AAC clip and on the ChaLearn sample
clips when ``../shared/fixtures/chalearn`` exists:

- median seconds per video of each step (decode, faces, audio, embed, write);
- end to end at ``--jobs 1`` and ``--jobs 2``: the marginal seconds of one more
  video, (time for many - time for few) / (many - few), which removes start-up;
- the machine's limit: (one full PyAV decode + T crops at the bare ResNet50
  batch-32 rate) / cores, and the ratio of the marginal cost to it.

Writes a JSON file and prints a table. Run: ``python -m bench.extract_bench --out FILE``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np

from cache.schema import VideoRecord
from cache.writer import write_shard
from extract.audio import audio_features
from extract.config import ExtractOptions
from extract.embed import embed
from extract.faces import crop_faces, locate_faces
from extract.synthetic import talking_head_clip
from extract.video import decode

CHALEARN = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "chalearn"
REPEATS = 3  # timings per step; the median is reported
FEW, MANY = 3, 11  # videos in the two end-to-end runs whose difference gives the marginal cost
RESNET_BATCH = 32  # images per call for the bare-throughput ceiling


def median_seconds(function, repeats: int = REPEATS) -> tuple[float, object]:
    """Median wall seconds of ``function()`` over ``repeats`` calls, and its last result."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def full_decode_seconds(path: Path) -> float:
    """Seconds to decode every frame of a video (PyAV, automatic threading)."""

    def run():
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for _ in container.decode(stream):
                pass

    return median_seconds(run)[0]


def resnet_images_per_second(options: ExtractOptions) -> float:
    """Bare ResNet50 throughput at batch 32 (after a warm-up call)."""
    crops = np.random.default_rng(0).integers(0, 256, (RESNET_BATCH, options.crop_size, options.crop_size, 3), dtype=np.uint8)
    embed(crops, options.weights, options.crop_size, options.seed, RESNET_BATCH)
    seconds, _ = median_seconds(lambda: embed(crops, options.weights, options.crop_size, options.seed, RESNET_BATCH), repeats=5)
    return RESNET_BATCH / seconds


def step_seconds(path: Path, options: ExtractOptions, scratch: Path) -> dict[str, float]:
    """Median seconds of each per-video step on one clip."""
    steps = {}
    steps["decode"], decoded = median_seconds(lambda: decode(path, options.frames, 1, "centre", options.audio_rate))
    steps["faces"], crops = median_seconds(lambda: crop_faces(decoded.frames, locate_faces(decoded.frames, options.detect_height, options.scale_factor, options.min_neighbors, options.min_neighbors_floor, options.min_face).used, options.face_margin, options.crop_size))
    steps["audio"], audio = median_seconds(lambda: audio_features(decoded.audio, options.audio_rate, decoded.duration, options.frames, options.audio_window, options.audio_step, options.audio_mode))
    embed(crops, options.weights, options.crop_size, options.seed)
    steps["embed"], embeddings = median_seconds(lambda: embed(crops, options.weights, options.crop_size, options.seed))
    record = VideoRecord(
        video_id=path.name, split="bench", content_hash="0" * 64, source=str(path), face_embeddings=embeddings,
        audio_features=audio, frame_times=decoded.frame_times, face_boxes=np.zeros((options.frames, 4), np.int32),
        face_found=np.ones(options.frames, bool), has_audio=True, face_crops=crops,
    )
    steps["write"], _ = median_seconds(lambda: write_shard(scratch / "bench-shard.h5", [record], {}))
    return steps


def distinct_copies(path: Path, count: int, folder: Path) -> Path:
    """``count`` copies of a clip that differ by trailing bytes, so none is skipped as a duplicate."""
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        copy = folder / f"{path.stem}-{index:03d}{path.suffix}"
        shutil.copyfile(path, copy)
        with open(copy, "ab") as handle:
            handle.write(f"traitcache-bench-{index}".encode())
    return folder


def extraction_seconds(folder: Path, cache_dir: Path, jobs: int, options: ExtractOptions) -> float:
    """Wall seconds of ``python -m extract`` over a folder (fresh cache)."""
    shutil.rmtree(cache_dir, ignore_errors=True)
    command = [sys.executable, "-m", "extract", str(folder), "--cache", str(cache_dir), "--weights", options.weights, "--jobs", str(jobs), "--quiet"]
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def marginal_seconds(path: Path, jobs: int, options: ExtractOptions, scratch: Path) -> float:
    """Seconds one more video adds to an extraction run at ``jobs`` workers."""
    few = extraction_seconds(distinct_copies(path, FEW, scratch / f"few-{path.stem}"), scratch / "cache", jobs, options)
    many = extraction_seconds(distinct_copies(path, MANY, scratch / f"many-{path.stem}"), scratch / "cache", jobs, options)
    return (many - few) / (MANY - FEW)


def bench_clip(path: Path, options: ExtractOptions, resnet_rate: float, scratch: Path) -> dict:
    steps = step_seconds(path, options, scratch)
    decode_all = full_decode_seconds(path)
    cores = os.cpu_count() or 1
    limit = (decode_all + options.frames / resnet_rate) / cores
    result = {"clip": path.name, "steps": steps, "full_decode": decode_all, "limit_per_video": limit}
    for jobs in (1, 2):
        result[f"marginal_jobs{jobs}"] = marginal_seconds(path, jobs, options, scratch)
    result["ratio_to_limit_jobs2"] = result["marginal_jobs2"] / limit
    return result


def print_table(report: dict) -> None:
    print(f"ResNet50 (weights={report['weights']}, {report['crop_size']} px, batch {RESNET_BATCH}): {report['resnet_images_per_second']:.1f} images/s on {report['cores']} cores")
    header = f"{'clip':<28}{'decode':>8}{'faces':>8}{'audio':>8}{'embed':>8}{'write':>8}{'jobs1':>8}{'jobs2':>8}{'limit':>8}{'ratio':>7}"
    print(header)
    for clip in report["clips"]:
        steps = clip["steps"]
        print(
            f"{clip['clip'][:27]:<28}" + "".join(f"{steps[name]:8.3f}" for name in ("decode", "faces", "audio", "embed", "write"))
            + f"{clip['marginal_jobs1']:8.3f}{clip['marginal_jobs2']:8.3f}{clip['limit_per_video']:8.3f}{clip['ratio_to_limit_jobs2']:7.2f}"
        )
    print("seconds per video (steps: median of 3; jobs1/jobs2: marginal end to end; limit: (full decode + T crops at batch-32 rate) / cores)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench-out/extract.json"))
    parser.add_argument("--weights", default="none", help="ResNet50 weights (none needs no download)")
    arguments = parser.parse_args()
    options = ExtractOptions(weights=arguments.weights)
    with tempfile.TemporaryDirectory(prefix="traitcache-bench-") as folder:
        scratch = Path(folder)
        clips = [talking_head_clip(scratch / "generated-720p.mp4", seconds=15.0, width=1280, height=720, fps=30)]
        if CHALEARN.is_dir():
            clips += sorted(CHALEARN.glob("*/*.mp4"))
        resnet_rate = resnet_images_per_second(options)
        report = {
            "weights": options.weights, "crop_size": options.crop_size, "frames": options.frames, "cores": os.cpu_count(),
            "resnet_images_per_second": resnet_rate,
            "clips": [bench_clip(clip, options, resnet_rate, scratch) for clip in clips],
        }
    arguments.out.parent.mkdir(parents=True, exist_ok=True)
    arguments.out.write_text(json.dumps(report, indent=1))
    print_table(report)
    print(f"wrote {arguments.out}")


if __name__ == "__main__":
    main()
