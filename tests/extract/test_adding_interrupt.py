"""Ctrl-C during `python -m extract add`: the first finishes the part file in flight, a second stops at once;
finished parts are kept untouched and the same command adds only the rest."""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from cache.reader import CacheReader
from cache.sets import stored_sets
from cache.verify import verify
from cache.writer import shard_files
from extract.adding import AddOptions, add_sets
from extract.config import ExtractOptions
from extract.run import extract_to_cache

SET = "face:mobilenetv3small"  # the fastest backbone: the run's time is TensorFlow's start-up
SPLITS = ("train", "validation")
RUN_TIMEOUT = 300  # seconds for one tiny add on a busy 2-core machine, start-up included
SECOND_CTRL_C_BOUND = 10  # seconds, the README's: from the second Ctrl-C to the end of the process
FIRST_STOP = "stopping: finishing 1 video in flight; Ctrl-C again to stop now"

# Imported at start-up by every Python process of the run (the command and loky's worker
# processes, which loky starts afresh) through PYTHONPATH. At the rename that puts the
# CTRL_C_AT_PART-th part file of a set in place, the process about to rename it records
# the parts finished, the one in flight and the time in CTRL_C_MARKS, then sends SIGINT
# CTRL_C_TIMES times to the whole process group, as a terminal's Ctrl-C does.
CTRL_C_AT_A_PART = """
import json, os, signal, sys, time
from pathlib import Path


def audit(event, arguments):
    if event != "os.rename" or not Path(os.fsdecode(arguments[1])).name.startswith("part-"):
        return
    part = Path(os.fsdecode(arguments[1]))
    finished = sorted(found.name for found in part.parent.glob("part-*.h5"))
    if len(finished) != int(os.environ["CTRL_C_AT_PART"]) - 1:
        return
    try:
        marks = os.open(os.environ["CTRL_C_MARKS"], os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:  # another worker signalled first
        return
    os.write(marks, json.dumps({"finished": finished, "in_flight": part.name, "at": time.time()}).encode())
    os.close(marks)
    for _ in range(int(os.environ["CTRL_C_TIMES"])):
        os.killpg(os.getpgrp(), signal.SIGINT)
        time.sleep(0)  # two pending SIGINTs count as one: the handler runs between them


if os.environ.get("CTRL_C_MARKS"):
    sys.addaudithook(audit)
"""


@pytest.fixture(scope="module")
def cache_of_four_shards(tmp_path_factory, clip_folder) -> Path:
    """Four videos in two splits, one per shard: four part files per set."""
    cache = tmp_path_factory.mktemp("shards") / "cache"
    options = ExtractOptions.from_dict(
        {"frames": 4, "crop_size": 32, "weights": "none", "jobs": 1, "videos_per_shard": 1}
    )
    inputs = [f"{split}={clip_folder / split}" for split in SPLITS]
    extract_to_cache(inputs, cache, [], options, show_progress=False)
    assert len(shard_files(cache)) == 4
    return cache


@pytest.fixture(scope="module")
def uninterrupted(cache_of_four_shards, tmp_path_factory) -> dict[str, np.ndarray]:
    """The set's values, per split, of an add run to its end on a copy of the cache."""
    cache = Path(shutil.copytree(cache_of_four_shards, tmp_path_factory.mktemp("uninterrupted") / "cache"))
    add_sets(cache, AddOptions(features=SET, weights="none"), show_progress=False)
    return {split: CacheReader(cache).read(split, (SET,))[SET] for split in SPLITS}


def _add_with_ctrl_c(run, cache: Path, tmp_path: Path, jobs: int, times: int, backend: str = "loky"):
    """Run ``python -m extract add`` (``run_as_a_terminal_job``) with Ctrl-C (``times`` SIGINTs) as its
    second part file is renamed into place.

    Returns the completed process and the time it ended (``time.time()``).
    """
    environment = {"CTRL_C_AT_PART": "2", "CTRL_C_TIMES": str(times), "CTRL_C_MARKS": str(tmp_path / "marks.json")}
    command = [sys.executable, "-m", "extract", "add", str(cache), "--features", SET, "--weights", "none"]
    command += ["--quiet", "--jobs", str(jobs), "--backend", backend]
    return run(command, CTRL_C_AT_A_PART, environment, RUN_TIMEOUT), time.time()


def _parts(cache: Path) -> dict[str, tuple[int, str]]:
    """Part file name -> (mtime in ns, SHA-256 of its bytes)."""
    (found,) = stored_sets(cache)
    return {
        part.name: (part.stat().st_mtime_ns, hashlib.sha256(part.read_bytes()).hexdigest())
        for part in sorted(found.folder.glob("part-*.h5"))
    }


def _assert_only_whole_parts(cache: Path, parts: dict) -> None:
    """No temporary file is left, and `cache verify` finds nothing wrong but the parts not written yet."""
    (found,) = stored_sets(cache)
    assert sorted(path.name for path in found.folder.iterdir()) == sorted([*parts, "descriptor.json"])
    problems = verify(cache)
    assert len(problems) == len(shard_files(cache)) - len(parts)
    assert all("has no part file" in problem.reason for problem in problems), problems


def _assert_the_rerun_adds_only_the_rest(cache: Path, parts: dict, expected: dict[str, np.ndarray]) -> None:
    summary = add_sets(cache, AddOptions(features=SET, weights="none"), show_progress=False)
    assert summary.added == {SET: len(shard_files(cache)) - len(parts)} and not summary.interrupted
    after = _parts(cache)
    assert {name: after[name] for name in parts} == parts  # the finished parts are untouched
    assert verify(cache) == []
    for split in SPLITS:
        np.testing.assert_array_equal(CacheReader(cache).read(split, (SET,))[SET], expected[split])


# One job: exactly the part finished before the signal and the one in flight. Two (loky
# processes, or the worker processes of a local Dask cluster, which the Ctrl-C reaches too):
# those, and maybe parts the other worker finished.
@pytest.mark.parametrize(("jobs", "most_parts", "backend"), [(1, 2, "loky"), (2, 4, "loky"), (2, 4, "dask")])
def test_the_first_ctrl_c_finishes_the_part_in_flight_and_the_same_command_adds_the_rest(
    cache_of_four_shards, uninterrupted, tmp_path, jobs, most_parts, backend, run_as_a_terminal_job
):
    cache = Path(shutil.copytree(cache_of_four_shards, tmp_path / "cache"))
    process, _ = _add_with_ctrl_c(run_as_a_terminal_job, cache, tmp_path, jobs, times=1, backend=backend)
    output, errors = process.stdout, process.stderr
    assert process.returncode == 130, errors[-2000:]
    assert FIRST_STOP + "\n" in errors and "Traceback" not in errors, errors[-2000:]
    assert "interrupted: finished part files are kept" in errors and "run the same command again" in errors
    moment = json.loads((tmp_path / "marks.json").read_text())
    parts = _parts(cache)
    assert {*moment["finished"], moment["in_flight"]} <= set(parts) and len(moment["finished"]) == 1
    assert 2 <= len(parts) <= most_parts, (moment, parts)
    assert output == f"{SET}: {len(parts)} videos added\n"
    _assert_only_whole_parts(cache, parts)
    _assert_the_rerun_adds_only_the_rest(cache, parts, uninterrupted)


def test_a_second_ctrl_c_stops_within_the_bound_losing_only_the_part_in_flight(
    cache_of_four_shards, uninterrupted, tmp_path, run_as_a_terminal_job
):
    cache = Path(shutil.copytree(cache_of_four_shards, tmp_path / "cache"))
    process, ended = _add_with_ctrl_c(run_as_a_terminal_job, cache, tmp_path, jobs=1, times=2)
    output, errors = process.stdout, process.stderr
    assert process.returncode == 130, errors[-2000:]
    assert FIRST_STOP + "\n" in errors and "stopped at once by Ctrl-C: the part files in flight are lost" in errors, (
        errors[-2000:]
    )
    assert "Traceback" not in errors and output == ""
    moment = json.loads((tmp_path / "marks.json").read_text())
    assert ended - moment["at"] < SECOND_CTRL_C_BOUND, f"{ended - moment['at']:.1f} s"
    parts = _parts(cache)
    assert sorted(parts) == moment["finished"]  # the part in flight is lost, the finished one kept
    _assert_only_whole_parts(cache, parts)
    _assert_the_rerun_adds_only_the_rest(cache, parts, uninterrupted)
