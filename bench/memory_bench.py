"""Memory benchmark (``make bench``): peak RSS of ``python -m extract``.

Peak resident memory of the whole process tree (parent and workers, sampled
every 50 ms) for one 15 s clip vs one 60 min clip, both with a 16 kHz mono sound
track (``--jobs 1``), and for 10 vs 200 videos (``--jobs 2``), so that growth with
video length and with data-set size shows at a glance. The long clip has tiny frames at 1 fps to keep
the benchmark short: what grows with length is the sound, which extraction holds
once as int16 (``sound_track_mib_60min``); frames are kept only when sampled.
Run: ``python -m bench.memory_bench --out FILE``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from bench.extract_bench import distinct_copies
from extract.synthetic import long_clip_with_sound, talking_head_clip

SAMPLE_SECONDS = 0.05  # RSS polling interval
TINY = ["--weights", "none", "--crop-size", "32", "--frames", "10", "--quiet"]
SOUND_RATE = 16000  # Hz of the sound tracks, the default --audio-rate
LONG_SECONDS = 3600  # an hour-long interview: ~2.5 min to make and ~2 min to extract on a busy 2-core machine
SOUND_SAMPLE_BYTES = 2  # int16


def peak_rss_bytes(command: list[str]) -> int:
    """Largest summed RSS of a command's process tree while it runs."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    root = psutil.Process(process.pid)
    peak = 0
    while process.poll() is None:
        try:
            tree = [root, *root.children(recursive=True)]
            peak = max(peak, sum(member.memory_info().rss for member in tree if member.is_running()))
        except psutil.NoSuchProcess:
            pass
        time.sleep(SAMPLE_SECONDS)
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {process.returncode}")
    return peak


def extraction_peak(folder: Path, cache_dir: Path, jobs: int) -> int:
    return peak_rss_bytes(
        [sys.executable, "-m", "extract", str(folder), "--cache", str(cache_dir), "--jobs", str(jobs), *TINY]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench-out/memory.json"))
    arguments = parser.parse_args()
    mebibyte = 2**20
    with tempfile.TemporaryDirectory(prefix="traitcache-memory-") as folder:
        scratch = Path(folder)
        report = {}
        for name, seconds in (("15s", 15), ("60min", LONG_SECONDS)):
            clip_folder = scratch / f"clip-{name}"
            clip_folder.mkdir()
            long_clip_with_sound(clip_folder / f"{name}.mp4", seconds, audio_rate=SOUND_RATE)
            # One worker: with two, the idle one's start-up lands inside the long run only, and its libraries would count as growth.
            report[f"peak_rss_mib_one_{name}_clip"] = (
                extraction_peak(clip_folder, scratch / f"cache-{name}", jobs=1) / mebibyte
            )
        report["sound_track_mib_60min"] = SOUND_SAMPLE_BYTES * SOUND_RATE * LONG_SECONDS / mebibyte
        short = talking_head_clip(scratch / "15s-320x240.mp4", seconds=15.0, width=320, height=240, fps=25)
        for count in (10, 200):
            report[f"peak_rss_mib_{count}_videos"] = (
                extraction_peak(
                    distinct_copies(short, count, scratch / f"set-{count}"), scratch / f"cache-set-{count}", jobs=2
                )
                / mebibyte
            )
    arguments.out.parent.mkdir(parents=True, exist_ok=True)
    arguments.out.write_text(json.dumps(report, indent=1))
    for key, value in report.items():
        print(f"{key:<36}{value:10.0f}")
    print(f"wrote {arguments.out}")


if __name__ == "__main__":
    main()
