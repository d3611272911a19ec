"""cache.lock: one writer per cache folder, who holds it, and locks that never stick."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest

from cache import lock as lock_module
from cache.lock import CacheLock, lock_holder
from cache.manifest import Index
from cache.synthetic import SMALL_CONFIG, random_record, write_random_cache
from cache.writer import CacheWriter
from common.errors import CacheError


def test_second_writer_is_refused_while_the_first_is_open(tmp_path):
    with CacheWriter(tmp_path, SMALL_CONFIG) as first:
        with pytest.raises(CacheError, match=f"another process \\(pid {os.getpid()}\\) is writing"):
            with CacheWriter(tmp_path, SMALL_CONFIG):
                pass
        first.add(random_record(0))
    with CacheWriter(tmp_path, SMALL_CONFIG) as again:
        assert again.index.num_videos() == 1


@pytest.mark.parametrize("ending", ["SIGKILL", "SIGTERM"])
def test_a_lock_held_by_another_process_blocks_until_it_dies(tmp_path, ending, children):
    child = children.hold_lock(str(tmp_path))
    try:
        with pytest.raises(CacheError, match=f"pid {child.pid}"):
            with CacheWriter(tmp_path, SMALL_CONFIG):
                pass
    finally:
        child.send_signal(getattr(signal, ending))
        children.wait(child)
    with CacheWriter(tmp_path, SMALL_CONFIG) as writer:
        writer.add(random_record(0))
    assert Index.load(tmp_path).num_videos() == 1


def test_lock_holder_names_the_writing_process_and_never_blocks_it(tmp_path, children):
    assert lock_holder(tmp_path) is None  # no lock file yet
    child = children.hold_lock(str(tmp_path))
    try:
        assert lock_holder(tmp_path) == f"pid {child.pid}"
    finally:
        child.kill()
        children.wait(child)
    assert lock_holder(tmp_path) is None
    with CacheWriter(tmp_path, SMALL_CONFIG):
        assert lock_holder(tmp_path) == f"pid {os.getpid()}"
    assert lock_holder(tmp_path) is None


def test_a_writer_starting_while_the_lock_is_probed_waits_instead_of_refusing(tmp_path, monkeypatch):
    write_random_cache(tmp_path, [0])
    probe = open(tmp_path / lock_module.LOCK_FILE, encoding="utf-8")
    fcntl.flock(probe, fcntl.LOCK_SH | fcntl.LOCK_NB)  # what lock_holder holds for an instant
    retries = []

    def end_the_probe(seconds):
        retries.append(seconds)
        probe.close()  # releases the shared lock

    monkeypatch.setattr(lock_module, "time", SimpleNamespace(monotonic=time.monotonic, sleep=end_the_probe))
    with CacheWriter(tmp_path, SMALL_CONFIG) as writer:
        writer.add(random_record(1))
    assert retries == [lock_module.LOCK_RETRY_SECONDS]
    assert Index.load(tmp_path).num_videos() == 2


def test_a_lock_left_by_an_abrupt_exit_does_not_block(tmp_path, children):
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import os, sys\nfrom cache.synthetic import SMALL_CONFIG\nfrom cache.writer import CacheWriter\nCacheWriter(sys.argv[1], SMALL_CONFIG).__enter__()\nos._exit(0)",
            str(tmp_path),
        ],
        capture_output=True,
        timeout=children.timeout,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / lock_module.LOCK_FILE).exists()
    with CacheWriter(tmp_path, SMALL_CONFIG):
        pass


def test_the_refusal_names_what_the_folder_is(tmp_path):
    with CacheLock(tmp_path, what="sweep folder"):
        with pytest.raises(CacheError) as refused:
            with CacheLock(tmp_path, what="sweep folder"):
                pass
    assert str(refused.value) == (
        f"{tmp_path}: another process (pid {os.getpid()}) is writing to this sweep folder; "
        "wait for it to finish or stop it"
    )
