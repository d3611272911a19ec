"""Ctrl-C during an extraction: the first stops starting videos and finishes those in hand,
saying so at once; a second stops at once."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

from cache.manifest import plural

STDERR = 2  # file descriptor: written directly, as a signal may arrive while sys.stderr is mid-write


@dataclass
class StopRequest:
    """The first Ctrl-C's request to start no further video, and what that stop still finishes.

    ``extract.parallel.featurize_jobs`` keeps ``waiting`` (the decoded videos waiting for
    their embeddings) and ``awaiting`` (whether it waits for the workers' next result)
    up to date: once ``requested``, it finishes the waiting videos and the result it
    waits for, and drops the videos still in the workers. ``extract.adding.add_sets``
    keeps ``waiting`` as the videos of the part file it waits for, which it finishes.
    """

    requested: bool = False
    waiting: list = field(default_factory=list)
    awaiting: bool = False

    def in_flight(self) -> int:
        """Videos the stop will still finish and write."""
        return len(self.waiting) + int(self.awaiting)


@contextlib.contextmanager
def deferred_interrupt(show_progress: bool = True) -> Iterator[StopRequest]:
    """Turn the first Ctrl-C into a request to stop once the videos in hand are
    written, so that shards and the index are never cut mid-write, and say so at
    once on stderr; a second Ctrl-C stops at once (KeyboardInterrupt).

    Parameters
    ----------
    show_progress : bool
        A progress bar is on stderr: the message starts on a line of its own.
    """
    stop = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def request_stop(signum, frame):
        if stop.requested:
            raise KeyboardInterrupt
        stop.requested = True
        start = "\n" if show_progress else ""
        message = (
            f"{start}stopping: finishing {plural(stop.in_flight(), 'video')} in flight; Ctrl-C again to stop now\n"
        )
        os.write(STDERR, message.encode())

    previous = signal.signal(signal.SIGINT, request_stop)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)


def ignore_ctrl_c() -> None:
    """Ignore Ctrl-C in this process: a worker's, whose parent decides what a Ctrl-C stops
    (a terminal sends it to the worker processes too)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def dask_setup(worker) -> None:
    """Dask's hook for a worker preload module (``LocalCluster(preload=[__name__])``): the
    worker ignores Ctrl-C, as loky's do (``ignore_ctrl_c``)."""
    ignore_ctrl_c()
