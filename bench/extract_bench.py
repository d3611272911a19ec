"""Extraction benchmark (``make bench``): where the seconds of one video go, and how
close the whole run comes to this machine's limit.

Measures, on a generated 15 s 1280x720 clip with the ChaLearn clips' GOP structure
(P-frames referencing B-frames) and on the ChaLearn sample clips when
``../shared/fixtures/chalearn`` exists:

- median seconds per video of each step (decode, faces, audio, embed, write);
- end to end at ``--jobs 1`` and ``--jobs 2``: the marginal seconds of one more
  video, (time for many - time for few) / (many - few), which removes start-up;
- the machine's limit per video, measured in the same run: (one decode of the
  video stream skipping non-reference frames, one thread + T Haar detections, one
  thread + T crops at the fastest ResNet50 runtime that gives Keras' numbers,
  batch 32) / cores, and the ratio of the marginal cost at ``--jobs 2`` to it.

Writes a JSON file and prints a table. Run: ``python -m bench.extract_bench --out FILE``.
"""

from __future__ import annotations

import argparse
import functools
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
import cv2
import numpy as np

from cache.schema import VideoRecord
from cache.writer import write_shard
from common.options import replace
from extract.audio import audio_features
from extract.config import ExtractOptions
from extract.embed import RuntimeUnavailableError, embed, resolve_runtime
from extract.faces import crop_faces, locate_faces
from extract.synthetic import chalearn_like_clip
from extract.video import decode

CHALEARN = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "chalearn"
REPEATS = 3  # timings per step; the median is reported
FEW, MANY = 3, 11  # videos in the two end-to-end runs whose difference gives the marginal cost
RESNET_BATCH = 32  # images per call for the bare-throughput ceiling
SAME_NUMBER_RUNTIMES = ("keras", "openvino")  # float32 runtimes whose outputs equal Keras within float16 storage


def median_seconds(function, repeats: int = REPEATS) -> tuple[float, object]:
    """Median wall seconds of ``function()`` over ``repeats`` calls, and its last result."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def skipping_decode_seconds(path: Path) -> float:
    """Seconds to decode a video stream with one thread, skipping every non-reference frame."""

    def run():
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_count = 1
            stream.codec_context.skip_frame = "NONREF"
            for _ in container.decode(stream):
                pass

    return median_seconds(run)[0]


def haar_seconds(frames: np.ndarray, options: ExtractOptions) -> float:
    """Seconds of T face detections with one OpenCV thread."""
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        return median_seconds(lambda: locate_faces(frames, options.faces))[0]
    finally:
        cv2.setNumThreads(threads)


def resnet_images_per_second(options: ExtractOptions) -> dict[str, float]:
    """Bare ResNet50 throughput at batch 32 (after a warm-up call) of each float32 runtime installed."""
    side = options.faces.crop_size
    crops = np.random.default_rng(0).integers(0, 256, (RESNET_BATCH, side, side, 3), dtype=np.uint8)
    rates = {}
    for runtime in SAME_NUMBER_RUNTIMES:
        try:
            resolve_runtime(runtime)
        except RuntimeUnavailableError:
            continue
        embedding = replace(options.embed, runtime=runtime, batch_size=RESNET_BATCH)
        run = functools.partial(embed, crops, embedding, options.seed)
        run()
        rates[runtime] = RESNET_BATCH / median_seconds(run, repeats=5)[0]
    return rates


def step_seconds(path: Path, options: ExtractOptions, scratch: Path) -> dict[str, float]:
    """Median seconds of each per-video step on one clip."""
    steps = {}
    decoding = options.decode
    steps["decode"], decoded = median_seconds(lambda: decode(path, decoding, threads=1))
    steps["faces"], crops = median_seconds(
        lambda: crop_faces(decoded.frames, locate_faces(decoded.frames, options.faces).used, options.faces)
    )
    steps["audio"], audio = median_seconds(
        lambda: audio_features(decoded.audio, decoding.audio_rate, decoded.duration, decoding.frames, options.audio)
    )
    embed(crops, options.embed, options.seed)
    steps["embed"], embeddings = median_seconds(lambda: embed(crops, options.embed, options.seed))
    record = VideoRecord(
        video_id=path.name,
        split="bench",
        content_hash="0" * 64,
        source=str(path),
        face_embeddings=embeddings,
        audio_features=audio,
        frame_times=decoded.frame_times,
        face_boxes=np.zeros((decoding.frames, 4), np.int32),
        face_found=np.ones(decoding.frames, bool),
        has_audio=True,
        face_crops=crops,
    )
    steps["write"], _ = median_seconds(lambda: write_shard(scratch / "bench-shard.h5", [record], {}))
    steps["haar_one_thread"] = haar_seconds(decoded.frames, options)
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


def extract_command(folder: Path, cache_dir: Path, *flags: str, weights: str = "none") -> list[str]:
    """``python -m extract`` over ``folder`` into ``cache_dir`` without progress bars."""
    return [
        sys.executable,
        "-m",
        "extract",
        str(folder),
        "--cache",
        str(cache_dir),
        "--weights",
        weights,
        "--quiet",
        *flags,
    ]


def extraction_seconds(folder: Path, cache_dir: Path, jobs: int, options: ExtractOptions) -> float:
    """Wall seconds of ``python -m extract`` over a folder (fresh cache)."""
    shutil.rmtree(cache_dir, ignore_errors=True)
    command = extract_command(folder, cache_dir, "--jobs", str(jobs), weights=options.embed.weights)
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def marginal_seconds(path: Path, jobs: int, options: ExtractOptions, scratch: Path) -> float:
    """Seconds one more video adds to an extraction run at ``jobs`` workers."""
    few = extraction_seconds(distinct_copies(path, FEW, scratch / f"few-{path.stem}"), scratch / "cache", jobs, options)
    many = extraction_seconds(
        distinct_copies(path, MANY, scratch / f"many-{path.stem}"), scratch / "cache", jobs, options
    )
    return (many - few) / (MANY - FEW)


def bench_clip(path: Path, options: ExtractOptions, resnet_rate: float, scratch: Path) -> dict:
    steps = step_seconds(path, options, scratch)
    decode_skipping = skipping_decode_seconds(path)
    cores = os.cpu_count() or 1
    limit = (decode_skipping + steps["haar_one_thread"] + options.decode.frames / resnet_rate) / cores
    result = {"clip": path.name, "steps": steps, "decode_skipping_nonref": decode_skipping, "limit_per_video": limit}
    for jobs in (1, 2):
        result[f"marginal_jobs{jobs}"] = marginal_seconds(path, jobs, options, scratch)
    result["ratio_to_limit_jobs2"] = result["marginal_jobs2"] / limit
    return result


def print_table(report: dict) -> None:
    rates = ", ".join(f"{runtime} {rate:.1f}" for runtime, rate in report["resnet_images_per_second"].items())
    print(
        f"ResNet50 (weights={report['weights']}, {report['crop_size']} px, batch {RESNET_BATCH}) images/s on {report['cores']} cores: {rates}"
    )
    header = f"{'clip':<28}{'decode':>8}{'faces':>8}{'audio':>8}{'embed':>8}{'write':>8}{'jobs1':>8}{'jobs2':>8}{'limit':>8}{'ratio':>7}"
    print(header)
    for clip in report["clips"]:
        steps = clip["steps"]
        print(
            f"{clip['clip'][:27]:<28}"
            + "".join(f"{steps[name]:8.3f}" for name in ("decode", "faces", "audio", "embed", "write"))
            + f"{clip['marginal_jobs1']:8.3f}{clip['marginal_jobs2']:8.3f}{clip['limit_per_video']:8.3f}{clip['ratio_to_limit_jobs2']:7.2f}"
        )
    print(
        "seconds per video (steps: median of 3, one decoder thread; jobs1/jobs2: marginal end to end; "
        "limit: (non-reference-skipping decode + T Haar detections, one thread each, + T crops at the fastest float32 runtime) / cores)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench-out/extract.json"))
    parser.add_argument("--weights", default="none", help="ResNet50 weights (none needs no download)")
    arguments = parser.parse_args()
    options = ExtractOptions.from_dict({"weights": arguments.weights})
    runtime = resolve_runtime(options.embed.runtime)
    with tempfile.TemporaryDirectory(prefix="traitcache-bench-") as folder:
        scratch = Path(folder)
        clips = [chalearn_like_clip(scratch / "generated-chalearn-gop-720p.mp4")]
        if CHALEARN.is_dir():
            clips += sorted(CHALEARN.glob("*/*.mp4"))
        rates = resnet_images_per_second(options)
        report = {
            "weights": options.embed.weights,
            "crop_size": options.faces.crop_size,
            "frames": options.decode.frames,
            "cores": os.cpu_count(),
            "runtime": runtime,
            "resnet_images_per_second": rates,
            "clips": [bench_clip(clip, options, max(rates.values()), scratch) for clip in clips],
        }
    arguments.out.parent.mkdir(parents=True, exist_ok=True)
    arguments.out.write_text(json.dumps(report, indent=1))
    print_table(report)
    print(f"wrote {arguments.out}")


if __name__ == "__main__":
    main()
