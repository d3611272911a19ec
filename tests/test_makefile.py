"""Makefile: `make features` and `make train` run the real commands (this tree's code, this
Python), keep "2 = nothing done" true for make users, and name make's variables in errors."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from cache.reader import CacheReader

ROOT = Path(__file__).resolve().parents[1]
MAKE_TIMEOUT = 300  # seconds for a make recipe that extracts one tiny clip (TensorFlow start-up included)


def make(target: str, folder: Path, *variables: str) -> subprocess.CompletedProcess:
    """Run ``make TARGET`` of this tree's Makefile in ``folder``, with this test's Python
    instead of ``.venv`` (``STAMP=`` skips creating it) and this tree on the path."""
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    environment.pop("TRAITCACHE_VIA_MAKE", None)
    command = [
        "make",
        "--no-print-directory",
        "-f",
        str(ROOT / "Makefile"),
        target,
        "STAMP=",
        f"BIN={Path(sys.executable).parent}",
        *variables,
    ]
    return subprocess.run(command, cwd=folder, env=environment, capture_output=True, text=True, timeout=MAKE_TIMEOUT)


def test_make_features_with_a_broken_video_succeeds_and_counts_the_failure_last(clip_folder, tmp_path):
    data = tmp_path / "train"
    data.mkdir()
    shutil.copyfile(clip_folder / "train" / "train0.mp4", data / "good.mp4")
    (data / "broken.mp4").write_text("not a video")
    result = make(
        "features",
        tmp_path,
        f"DATA={data}",
        "CACHE=cache",
        "WEIGHTS=none",
        "JOBS=1",
        "EXTRACT_FLAGS=--frames 4 --crop-size 32 --quiet",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[-1] == "make features: some videos failed, the others are cached; failed: 1 (see cache/failures.csv)"
    assert "1 extracted" in lines[-2] and "1 failed" in lines[-2]
    assert f"failed: {data / 'broken.mp4'}" in result.stderr
    assert CacheReader(tmp_path / "cache").splits() == {"train": 1}


def test_a_refusal_through_make_names_the_make_variable_beside_the_flag(tmp_path):
    run = tmp_path / "runs" / "old"
    run.mkdir(parents=True)
    (run / "options.json").write_text("{}")  # what marks a folder as a run
    result = make("train", tmp_path, "NAME=old", "CACHE=cache")
    assert result.returncode == 2, result.stdout + result.stderr
    error = next(line for line in result.stderr.splitlines() if line.startswith("error: "))
    assert error == (
        "error: --out runs/old: already holds a run; pass --overwrite to replace it or choose another folder "
        "(through make: TRAIN_FLAGS=--overwrite)"
    )
    assert not (tmp_path / "cache").exists()
