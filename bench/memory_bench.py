"""Memory benchmark (``make bench``): peak memory of ``python -m extract``.

For one 15 s clip vs one 60 min clip, both with a 16 kHz mono sound track
(``--jobs 1``, one process): the growth of peak resident memory that each clip's
whole extraction adds, measured after a warm-up clip so that TensorFlow's start-up
peak hides nothing (``extraction_growths``). The README's bound: the 60 min clip
may add at most its int16 sound track plus 60 MiB over the 15 s one
(``within_bound``, beside ``bound_mib``). The long clip has tiny frames at 1 fps to
keep the benchmark short: what grows with length is the sound, which extraction
holds once as int16, also while writing it into the cache (the default
``--keep-audio``); frames are kept only when sampled. For 10 vs 200 videos
(``--jobs 2``): the peak of the whole process tree's summed RSS (parent and
workers, sampled every 50 ms). Run: ``python -m bench.memory_bench --out FILE``.
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
from common.files import write_atomically
from extract.synthetic import long_clip_with_sound, talking_head_clip

SAMPLE_SECONDS = 0.05  # RSS polling interval
TINY = ["--weights", "none", "--crop-size", "32", "--frames", "10", "--quiet"]
SOUND_RATE = 16000  # Hz of the sound tracks, the default --audio-rate
SHORT_SECONDS = 15  # the short clip, and the warm-up before it
LONG_SECONDS = 3600  # an hour-long interview: ~2.5 min to make and ~2 min to extract on a busy 2-core machine
SOUND_SAMPLE_BYTES = 2  # int16
# What a long clip's extraction may add over a short one's beyond its int16 sound track (the
# README's bound): decoder and resampler buffers, one batch of audio windows, allocator slack.
GROWTH_ALLOWANCE = 60 * 2**20

# `python -m extract` in this process on CLIPS (a warm-up clip first), one video per shard:
# after each shard appears, the peak resident size (VmHWM) is read and reset through Linux's
# /proc/self/clear_refs ("5"), so each clip's growth is its own peak minus the resident
# size when it started, with no earlier peak (TensorFlow's start-up) hiding it.
PEAKS_OF_EXTRACTION = """
import atexit, json, runpy, sys, threading, time
from pathlib import Path

output, cache_dir, clips = Path(sys.argv.pop(1)), Path(sys.argv.pop(1)), int(sys.argv.pop(1))
marks = []


def status(key):
    with open("/proc/self/status") as lines:
        return 1024 * int(next(line for line in lines if line.startswith(key)).split()[1])


def reset_after_each_shard():
    for number in range(clips - 1):
        while not (cache_dir / f"shard-{number:05d}.h5").exists():
            time.sleep(0.002)
        peak = status("VmHWM")
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        marks.append([peak, status("VmRSS")])


threading.Thread(target=reset_after_each_shard, daemon=True).start()
atexit.register(lambda: output.write_text(json.dumps(marks + [[status("VmHWM"), None]])))
runpy.run_module("extract", run_name="__main__", alter_sys=True)
"""
RUN_TIMEOUT = 3600  # seconds: an hour of sound on a busy 2-core machine takes a few minutes


def growth_bound(short_seconds: float, long_seconds: float, rate: int = SOUND_RATE) -> int:
    """Bytes a ``long_seconds`` clip's extraction may add over a ``short_seconds`` one's:
    the int16 sound track of the difference, plus GROWTH_ALLOWANCE."""
    return round(SOUND_SAMPLE_BYTES * rate * (long_seconds - short_seconds)) + GROWTH_ALLOWANCE


def extraction_growths(clips: list[Path], work: Path, flags: list[str]) -> list[int]:
    """Peak resident bytes that each clip's whole extraction adds, after the first one.

    Parameters
    ----------
    clips : list of Path
        A warm-up clip, then the clips measured, extracted in this order in one fresh process.
    work : Path
        Receives the cache (``work/cache``) and the measurements.
    flags : list of str
        Further ``python -m extract`` flags (at least ``--jobs 1``, so that one process does it all).

    Returns
    -------
    list of int
        (len(clips) - 1,) bytes.
    """
    marks, cache_dir = work / "marks.json", work / "cache"
    command = [sys.executable, "-c", PEAKS_OF_EXTRACTION, str(marks), str(cache_dir), str(len(clips))]
    command += [*map(str, clips), "--cache", str(cache_dir), "--videos-per-shard", "1", "--quiet", *flags]
    result = subprocess.run(command, capture_output=True, text=True, timeout=RUN_TIMEOUT)
    if result.returncode != 0:
        raise RuntimeError(f"extraction exited {result.returncode}: {result.stdout}{result.stderr[-2000:]}")
    measured = json.loads(marks.read_text())
    return [peak - start for (_, start), (peak, _) in zip(measured, measured[1:])]


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
        clips = [
            long_clip_with_sound(scratch / f"{name}.mp4", seconds, audio_rate=SOUND_RATE)
            for name, seconds in (("a-warm-up", SHORT_SECONDS), ("b-15s", SHORT_SECONDS), ("c-60min", LONG_SECONDS))
        ]
        # A batch of 10 crops is one video's: each is written before the next is decoded.
        short_growth, long_growth = extraction_growths(clips, scratch, [*TINY, "--jobs", "1", "--batch-size", "10"])
        bound = growth_bound(SHORT_SECONDS, LONG_SECONDS)
        report = {
            "growth_mib_15s_clip": short_growth / mebibyte,
            "growth_mib_60min_clip": long_growth / mebibyte,
            "sound_track_mib_60min": SOUND_SAMPLE_BYTES * SOUND_RATE * LONG_SECONDS / mebibyte,
            "bound_mib": bound / mebibyte,
            "within_bound": long_growth - short_growth <= bound,
        }
        short = talking_head_clip(scratch / "15s-320x240.mp4", seconds=15.0, width=320, height=240, fps=25)
        for count in (10, 200):
            report[f"peak_rss_mib_{count}_videos"] = (
                extraction_peak(
                    distinct_copies(short, count, scratch / f"set-{count}"), scratch / f"cache-set-{count}", jobs=2
                )
                / mebibyte
            )
    arguments.out.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(arguments.out, json.dumps(report, indent=1))
    for key, value in report.items():
        print(f"{key:<36}{value:10.0f}" if not isinstance(value, bool) else f"{key:<36}{value!s:>10}")
    print(f"wrote {arguments.out}")


if __name__ == "__main__":
    main()
