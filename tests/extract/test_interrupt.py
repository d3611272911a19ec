"""extract/interrupt.py: the first Ctrl-C says at once what the stop still finishes."""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import time

from extract.interrupt import StopRequest
from extract.synthetic import talking_head_clip

START_UP = 300  # seconds the run may take to write its first shard on a busy 2-core machine
AT_ONCE = 2.0  # seconds between the signal and the message: a signal handler, not the next video
MESSAGE = re.compile(rb"stopping: finishing (\d+) videos? in flight; Ctrl-C again to stop now\n")


def test_in_flight_counts_the_waiting_videos_and_the_result_awaited():
    stop = StopRequest(waiting=["clip0", "clip1"], awaiting=True)
    assert stop.in_flight() == 3
    stop.awaiting = False
    assert stop.in_flight() == 2


def test_the_first_ctrl_c_says_at_once_what_it_finishes(tmp_path, tiny_flags):
    data, cache = tmp_path / "train", tmp_path / "cache"
    data.mkdir()
    for index in range(12):
        talking_head_clip(data / f"clip{index}.mp4", seconds=1.0, brightness=0.4 + 0.04 * index)
    # A shard per video, and 8 videos per ResNet50 batch (4 crops each): the first shard
    # appears once a batch is embedded, while further videos are decoded and waiting.
    command = [sys.executable, "-m", "extract", str(data), "--cache", str(cache), *tiny_flags]
    command += ["--videos-per-shard", "1", "--batch-size", "32"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + START_UP
        while not (cache / "shard-00000.h5").exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert process.poll() is None, process.communicate()
        process.send_signal(signal.SIGINT)
        signalled = time.monotonic()
        message = b""
        while not MESSAGE.search(message) and time.monotonic() < signalled + AT_ONCE:
            if select.select([process.stderr], [], [], 0.1)[0]:
                message += os.read(process.stderr.fileno(), 4096)
        assert MESSAGE.search(message), message
        output, errors = process.communicate(timeout=START_UP)
    finally:
        process.kill()
    assert process.returncode == 130, errors
    finished = int(MESSAGE.search(message)[1])
    extracted = int(re.search(rb"(\d+) extracted", output)[1])
    # The first shard came with the first batch of 8 videos; after the signal, those the message announced.
    assert 1 <= finished < extracted and 8 <= extracted < 12, (message, output)
