"""Adding feature sets benchmark: seconds per clip of ``python -m extract add``, as a
ratio to a full extraction per clip measured in the same run.

Extracts a few distinct copies of a generated 15 s talking-head clip at the default
sizes (T=10, 224 px crops, sound kept, random ResNet50 weights), then adds one visual
set (``face:vgg16``) and one openSMILE set (``audio:egemaps``) from the stored crops and
sound track, each as its own command. Every figure is wall seconds of a whole command
(start-up included) divided by the clips; a ratio under 1 is what adding a set saves
over extracting again.

Run: ``python -m bench.add_bench --out bench-out/add.json``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.extract_bench import distinct_copies, extract_command
from extract.synthetic import talking_head_clip

CLIPS = 4  # distinct copies: enough to spread the start-up, few enough for a 2-core machine
CLIP_SECONDS = 15.0  # a ChaLearn clip's length
ADDED_SETS = ("face:vgg16", "audio:egemaps")


def command_seconds(command: list[str]) -> float:
    """Wall seconds of one command, which must succeed."""
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, timeout=3600)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench-out/add.json"))
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        clip = talking_head_clip(scratch / "clip.mp4", seconds=CLIP_SECONDS)
        folder = distinct_copies(clip, CLIPS, scratch / "clips")
        cache = scratch / "cache"
        extraction = command_seconds(extract_command(folder, cache, "--one-split")) / CLIPS
        report = {"clips": CLIPS, "clip_seconds": CLIP_SECONDS, "extraction_seconds_per_clip": extraction}
        for name in ADDED_SETS:
            add = [sys.executable, "-m", "extract", "add", str(cache), "--features", name, "--weights", "none"]
            seconds = command_seconds([*add, "--quiet"]) / CLIPS
            report[name] = {"seconds_per_clip": seconds, "ratio_to_extraction": seconds / extraction}
    print(f"extraction       {extraction:8.2f} s per clip")
    for name in ADDED_SETS:
        print(
            f"add {name:<13}{report[name]['seconds_per_clip']:8.2f} s per clip ({report[name]['ratio_to_extraction']:.2f} x extraction)"
        )
    arguments.out.parent.mkdir(parents=True, exist_ok=True)
    arguments.out.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
