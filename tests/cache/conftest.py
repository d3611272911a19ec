"""Fixtures of the cache tests: child Python processes that hold or write a cache."""

from __future__ import annotations

import select
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from common.files import TEMPORARY_SUFFIX

CHILD_TIMEOUT = 30  # seconds for a child Python to import h5py and open the cache, or to end once told
HOLD_LOCK = """
    import sys, time
    from cache.synthetic import SMALL_CONFIG
    from cache.writer import CacheWriter
    with CacheWriter(sys.argv[1], SMALL_CONFIG):
        print("ready", flush=True)
        time.sleep(60)
"""


class Children:
    """Child Pythons started by a test; any still running at its end are killed."""

    timeout = CHILD_TIMEOUT

    def __init__(self):
        self.started: list[subprocess.Popen] = []

    def start(self, script: str, *arguments: str) -> subprocess.Popen:
        """Run a Python snippet; return once it prints 'ready' (fail the test if it does not)."""
        child = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(script), *arguments],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.started.append(child)
        ready, _, _ = select.select([child.stdout], [], [], CHILD_TIMEOUT)
        line = child.stdout.readline() if ready else ""
        if line.strip() != "ready":
            child.kill()
            errors = self.finish(child)[1]
            pytest.fail(f"child did not print 'ready' within {CHILD_TIMEOUT} s: {line!r} {errors[-2000:]}")
        return child

    def hold_lock(self, cache_dir: Path) -> subprocess.Popen:
        """A child that has opened a CacheWriter on ``cache_dir`` and written nothing yet."""
        return self.start(HOLD_LOCK, str(cache_dir))

    def finish(self, child: subprocess.Popen) -> tuple[str, str]:
        """The child's remaining stdout and stderr; kill it and fail the test when it hangs."""
        try:
            return child.communicate(timeout=CHILD_TIMEOUT)
        except subprocess.TimeoutExpired:
            child.kill()
            child.communicate(timeout=CHILD_TIMEOUT)
            pytest.fail(f"child {child.pid} still running after {CHILD_TIMEOUT} s: killed")

    def wait(self, child: subprocess.Popen) -> int:
        """Wait for a child told to end (killed, signalled); its exit status."""
        return child.wait(timeout=CHILD_TIMEOUT)


@pytest.fixture
def children():
    started = Children()
    yield started
    for child in started.started:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=CHILD_TIMEOUT)


@pytest.fixture
def temporaries():
    """Names of the temporary files left in a folder."""

    def names(folder: Path) -> list[str]:
        return sorted(path.name for path in folder.glob(f"*{TEMPORARY_SUFFIX}"))

    return names
