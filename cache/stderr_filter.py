"""Quiet start-up: drop TensorFlow's start-up notices from stderr, keep its warnings and errors.

TensorFlow 2.21 logs through absl from static initialisers, before ``absl::InitializeLog()``
reads ``TF_CPP_MIN_LOG_LEVEL``: every process that imports it prints a banner and INFO
lines (oneDNN, "Could not find cuda drivers") that no environment variable silences, and,
on a machine without a GPU driver, a cuInit failure. The commands' ``__main__`` modules
route file descriptor 2, which worker processes inherit, through a small filter process
that drops those lines and copies everything else unchanged. ``TRAITCACHE_VERBOSE=1``
(or a CLI's ``--verbose``, through `show_startup_messages`) leaves stderr untouched.

Imports only the standard library: it also runs as a script of its own (the filter
process, started with ``python -I -S``).
"""

from __future__ import annotations

import atexit
import os
import re
import select
import subprocess
import sys
from dataclasses import dataclass

VERBOSE_VARIABLE = "TRAITCACHE_VERBOSE"  # set to 1 (or anything but 0) to see every start-up line
LOG_LEVEL_VARIABLE = "TF_CPP_MIN_LOG_LEVEL"
# 1 drops C++ INFO records logged after absl's initialisation (e.g. the two-line
# cpu_feature_guard notice) at their source; warnings and errors stay.
QUIET_LOG_LEVEL = "1"
STDERR = 2  # file descriptor
READ_SIZE = 65536  # bytes per read: one pipe buffer
# Seconds a line without its end waits for the rest before it is copied as it is:
# progress bars redraw with "\r" and never end their line, while a log record
# arrives whole in one write.
PARTIAL_LINE_WAIT = 0.1
EXIT_WAIT = 2.0  # seconds the command waits at most for the filter to copy what it wrote
# Written by the command when it takes its stderr back: the filter prints what came
# before, then answers on its stdout. Worker processes may still hold the pipe, so
# its end cannot serve as the signal.
DRAIN_REQUEST = b"\x00traitcache: stderr taken back\x00"

BANNER = rb"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
# absl's record header: severity, MMDD, time, thread id, source file:line, "] ". Before
# absl's initialisation the date reads 0000 and the seconds count from 1970.
RECORD = rb"(?P<severity>[IWEF])\d{4} \d\d:\d\d:\d+\.\d+ +\d+ (?P<source>[\w.]+):\d+\] (?P<message>.*)"
# Second line of cpu_feature_guard's INFO record, which has no header of its own.
INSTRUCTIONS = rb"To enable the following instructions: .* rebuild TensorFlow with the appropriate compiler flags\."
# A record may follow a progress bar's text on the same line; it runs to the line's end.
LOG_LINE = re.compile(rb"(?:(?P<banner>" + BANNER + rb")|" + RECORD + rb"|(?P<instructions>" + INSTRUCTIONS + rb"))$")
NO_DRIVER = b"Could not find cuda drivers"
CUINIT_SOURCE, CUINIT_FAILURE = b"cuda_platform.cc", b"failed call to cuInit"


@dataclass
class StartupLineFilter:
    """Decides, line by line, what of TensorFlow's start-up output to drop.

    Dropped: absl's pre-initialisation banner, every C++ INFO record (what
    ``TF_CPP_MIN_LOG_LEVEL=1`` promises), the headerless second line of the CPU
    instructions notice, and the cuInit failure once TensorFlow has said that the
    machine has no CUDA driver (on a machine with a driver the same failure is a
    real error, and shows). Every other line, warnings and errors included, is kept.
    """

    no_driver: bool = False

    def keep(self, line: bytes) -> bytes:
        """What to print of one line.

        Parameters
        ----------
        line : bytes
            One line without its ending newline.

        Returns
        -------
        bytes
            ``line`` and its newline when kept; the text before a dropped record
            (a progress bar's, say), without the newline, which belonged to the record.
        """
        found = LOG_LINE.search(line)
        if found is None or not self._drops(found):
            return line + b"\n"
        return line[: found.start()]

    def _drops(self, found: re.Match) -> bool:
        if found["banner"] or found["instructions"]:
            return True
        if found["severity"] == b"I":
            self.no_driver = self.no_driver or found["message"].startswith(NO_DRIVER)
            return True
        return self.no_driver and found["source"] == CUINIT_SOURCE and found["message"].startswith(CUINIT_FAILURE)


def copy_filtered(source: int, target: int, answer: int, line_filter: StartupLineFilter) -> None:
    """Copy bytes from file descriptor ``source`` to ``target`` until end of file, line by
    line through ``line_filter``; a line left unfinished for ``PARTIAL_LINE_WAIT`` seconds
    is copied as it stands. On a `DRAIN_REQUEST` line, writes a newline to ``answer``
    once everything before it is copied."""
    sink = open(target, "wb", closefd=False)  # buffered: writes every byte, however the pipe splits it
    pending = b""
    while True:
        ready, _, _ = select.select([source], [], [], PARTIAL_LINE_WAIT if pending else None)
        if not ready:
            sink.write(pending)
            sink.flush()
            pending = b""
            continue
        chunk = os.read(source, READ_SIZE)
        if not chunk:
            break
        *lines, pending = (pending + chunk).split(b"\n")
        for line in lines:
            if line.endswith(DRAIN_REQUEST):
                sink.write(line[: -len(DRAIN_REQUEST)])  # an unfinished line before the request, as it stands
                sink.flush()
                os.write(answer, b"\n")
            else:
                sink.write(line_filter.keep(line))
        sink.flush()
    sink.write(pending)
    sink.close()


@dataclass
class _Route:
    """The filter process (its stdout answers drain requests), and a copy of the stderr it writes to."""

    process: subprocess.Popen
    original: int
    log_level_set: bool


_route: _Route | None = None  # set while this process's stderr goes through the filter


def verbose_requested(environ=os.environ) -> bool:
    """True when ``TRAITCACHE_VERBOSE`` asks for every start-up line."""
    return environ.get(VERBOSE_VARIABLE, "0").strip() not in ("", "0")


def quiet_startup() -> None:
    """Route this process's stderr, and that of the processes it starts, through the filter.

    Call before TensorFlow is imported. Does nothing when `verbose_requested`, or
    when already routed. Sets ``TF_CPP_MIN_LOG_LEVEL=1`` unless the user set it.
    """
    global _route
    if _route is not None or verbose_requested():
        return
    log_level_set = LOG_LEVEL_VARIABLE not in os.environ
    if log_level_set:
        os.environ[LOG_LEVEL_VARIABLE] = QUIET_LOG_LEVEL
    sys.stderr.flush()
    # A session of its own keeps Ctrl-C (sent to the terminal's foreground group) from
    # the filter, so the command's last words after an interrupt still come through.
    process = subprocess.Popen(
        [sys.executable, "-I", "-S", __file__], stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True
    )
    original = os.dup(STDERR)
    os.dup2(process.stdin.fileno(), STDERR)
    process.stdin.close()
    _route = _Route(process, original, log_level_set)
    atexit.register(show_startup_messages)


def show_startup_messages() -> None:
    """Give this process its own stderr back, once the filter has printed what it wrote.

    A CLI's ``--verbose`` calls this before TensorFlow is imported; it also runs at
    exit. Does nothing when stderr is not routed. Processes started before keep
    writing through the filter, which ends with the last of them.
    """
    global _route
    if _route is None:
        return
    route, _route = _route, None
    sys.stderr.flush()
    os.write(STDERR, DRAIN_REQUEST + b"\n")
    os.dup2(route.original, STDERR)
    os.close(route.original)
    if route.log_level_set:
        os.environ.pop(LOG_LEVEL_VARIABLE, None)
    # The answer, or the end of a filter that died; after EXIT_WAIT go on regardless.
    select.select([route.process.stdout], [], [], EXIT_WAIT)
    route.process.stdout.close()


if __name__ == "__main__":
    copy_filtered(sys.stdin.fileno(), STDERR, sys.stdout.fileno(), StartupLineFilter())
