"""extract/parallel.py: streaming results in job order, and stopping without losing work."""

from __future__ import annotations

import sys

import numpy as np
import pytest

import extract.parallel as parallel
from cache.manifest import read_failures
from cache.reader import CacheReader
from extract.config import ExtractOptions
from extract.inputs import identify
from extract.interrupt import StopRequest
from extract.parallel import featurize_jobs
from extract.synthetic import talking_head_clip


def test_a_stop_after_the_first_record_still_yields_every_video_already_decoded(tmp_path, monkeypatch):
    # The defaults that matter here: T=10 frames and 32 crops per ResNet50 batch, so the
    # first batch completes three videos at once and a fourth is decoded and waiting.
    options = ExtractOptions.from_dict({"crop_size": 32, "weights": "none", "jobs": 1})
    assert (options.decode.frames, options.embed.batch_size) == (10, 32)
    paths = []
    for index in range(6):
        paths.append(tmp_path / f"clip{index}.mp4")
        talking_head_clip(paths[-1], seconds=1.0, brightness=0.4 + 0.1 * index)
    jobs, _ = identify([(path, "train") for path in paths])
    prepared = []
    original = parallel.prepare_video

    def counted(job, *arguments):
        prepared.append(job.video_id)
        return original(job, *arguments)

    monkeypatch.setattr(parallel, "prepare_video", counted)
    stop = StopRequest()
    records = []
    for record in featurize_jobs(jobs, options, stop):
        records.append(record)
        stop.requested = True
    assert [record.video_id for record in records] == prepared == ["clip0.mp4", "clip1.mp4", "clip2.mp4", "clip3.mp4"]
    assert all(record.face_embeddings.shape == (10, 2048) for record in records)


def test_workers_that_embed_give_the_records_the_parent_would(clip_folder, tiny_options):
    jobs, _ = identify([(path, "train") for path in sorted((clip_folder / "train").glob("*.mp4"))])
    batched = list(featurize_jobs(jobs, tiny_options))
    in_workers = []
    for job in jobs:
        in_workers.append(parallel.prepare_video(job, tiny_options, embed_here=True))
    for expected, actual in zip(batched, in_workers):
        assert actual.video_id == expected.video_id
        np.testing.assert_array_equal(actual.face_crops, expected.face_crops)
        np.testing.assert_array_equal(actual.audio_features, expected.audio_features)
        # Another batch composition changes the last float32 bits, never the float16 value by more than a step.
        np.testing.assert_allclose(
            actual.face_embeddings.astype(np.float32), expected.face_embeddings.astype(np.float32), rtol=2e-3, atol=2e-3
        )


def test_only_a_dask_run_embeds_in_its_workers():
    assert not parallel.embeds_in_workers(ExtractOptions())
    assert parallel.embeds_in_workers(ExtractOptions.from_dict({"backend": "dask"}))


# Imported at start-up by the command and by loky's worker processes (through PYTHONPATH).
# The first process to start records its pid, which the workers inherit through the
# environment. When a worker starts decoding a video (seen by a profile function: PyAV
# opens files in C, unseen by audit hooks), it sends SIGINT to the whole process group,
# as a terminal's Ctrl-C does, and carries on.
CTRL_C_IN_A_WORKER = """
import os, signal, sys, threading

os.environ.setdefault("CTRL_C_COMMAND_PID", str(os.getpid()))


def profile(frame, event, argument):
    code = frame.f_code
    if event != "call" or code.co_name != "decode" or not code.co_filename.endswith("video.py"):
        return
    try:
        os.close(os.open(os.environ["CTRL_C_MARKS"], os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:  # one Ctrl-C per run
        return
    os.killpg(os.getpgrp(), signal.SIGINT)


if os.environ.get("CTRL_C_MARKS") and str(os.getpid()) != os.environ["CTRL_C_COMMAND_PID"]:
    sys.setprofile(profile)
    threading.setprofile(profile)
"""
CTRL_C_TIMEOUT = 300  # seconds for a tiny extraction on a busy 2-core machine, start-up included


@pytest.mark.parametrize("backend", ["loky", "dask"])
def test_a_terminal_ctrl_c_reaching_the_workers_loses_no_video_and_reports_none_failed(
    clip_folder, tiny_flags, tmp_path, backend, run_as_a_terminal_job
):
    cache = tmp_path / "cache"
    command = [sys.executable, "-m", "extract", str(clip_folder / "train"), "--cache", str(cache), *tiny_flags]
    command += ["--jobs", "2", "--videos-per-shard", "1", "--backend", backend]
    stopped = run_as_a_terminal_job(
        command, CTRL_C_IN_A_WORKER, {"CTRL_C_MARKS": str(tmp_path / "signalled")}, CTRL_C_TIMEOUT
    )
    output, errors = stopped.stdout, stopped.stderr
    assert (tmp_path / "signalled").exists()
    assert stopped.returncode == 130, errors[-2000:]
    assert "stopping: finishing" in errors and "Traceback" not in errors, errors[-2000:]
    assert " 0 failed" in output and read_failures(cache) == [], output
    rerun = run_as_a_terminal_job(command, "", {}, CTRL_C_TIMEOUT)
    assert rerun.returncode == 0 and " 0 failed" in rerun.stdout, rerun.stderr[-2000:]
    ids = CacheReader(cache).read("train", ("video_id",))["video_id"]
    assert sorted(ids) == sorted(path.name for path in (clip_folder / "train").glob("*.mp4"))
