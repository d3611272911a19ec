"""The writer lock of a cache folder: one extraction (or repair) at a time, and who holds it."""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from common.errors import CacheError

LOCK_FILE = ".lock"
# `cache info` probes the lock with a shared lock held for microseconds; a writer
# starting in that instant retries this long (seconds) before refusing.
LOCK_GRACE_SECONDS = 0.2
LOCK_RETRY_SECONDS = 0.01  # between two tries


class CacheLock:
    """Exclusive advisory lock on a cache folder (or any folder one writer at a time
    owns, named ``what`` in the refusal); the lock file names the holder's pid."""

    def __init__(self, cache_dir: Path, what: str = "cache"):
        self.path = Path(cache_dir) / LOCK_FILE
        self.what = what
        self.handle = None

    def __enter__(self) -> CacheLock:
        self.handle = open(self.path, "a+", encoding="utf-8")
        try:
            self._acquire()
            # Names the holder in the message another writer gets and in `cache info`.
            self.handle.seek(0)
            self.handle.truncate()
            self.handle.write(f"pid {os.getpid()}")
            self.handle.flush()
        except BlockingIOError:
            holder = _holder(self.handle)
            self.handle.close()
            raise CacheError(
                f"{self.path.parent}: another process ({holder}) is writing to this {self.what}; wait for it to finish or stop it"
            ) from None
        except OSError:
            self.handle.close()  # closing releases the lock
            raise
        return self

    def _acquire(self) -> None:
        deadline = time.monotonic() + LOCK_GRACE_SECONDS
        while True:
            try:
                fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(LOCK_RETRY_SECONDS)

    def __exit__(self, *exc_info) -> None:
        fcntl.flock(self.handle, fcntl.LOCK_UN)
        self.handle.close()


def _holder(handle) -> str:
    handle.seek(0)
    return handle.read().strip() or "unknown pid"  # empty for the instant between lock and write


def lock_holder(cache_dir: Path) -> str | None:
    """Who holds the cache's writer lock (``"pid 1234"``), or None when no one does.

    Probes with a shared lock held for an instant; a writer that starts in that
    instant retries for LOCK_GRACE_SECONDS, so the probe never refuses one.
    """
    try:
        handle = open(Path(cache_dir) / LOCK_FILE, encoding="utf-8")
    except FileNotFoundError:
        return None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _holder(handle)
        fcntl.flock(handle, fcntl.LOCK_UN)
    return None
