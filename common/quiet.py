"""Quiet start-up: TensorFlow's start-up notices hidden where they are printed, its warnings kept.

TensorFlow 2.21 logs through absl from static initialisers, before ``absl::InitializeLog()``
reads ``TF_CPP_MIN_LOG_LEVEL``: every process that imports it prints a banner and INFO
lines (oneDNN, "Could not find cuda drivers") that no environment variable silences, then,
at its first device query on a machine without a GPU driver, a cuInit failure; on a CPU
without float16 support its first fit adds a oneDNN ``DT_HALF`` error that is only advice.
So the process that imports TensorFlow diverts its file descriptor 2 to a temporary file
around just those moments (`QuietStderr`, used by `start_tensorflow` and around a fit's
first step), then copies to the real stderr every line that is not such a notice. The rest
of the time stderr is the terminal itself: progress bars redraw in place, stdout and stderr
keep their order, and nothing depends on a helper process staying alive.

``TRAITCACHE_VERBOSE=1`` (or a CLI's ``--verbose``, through `show_everything`) leaves stderr
untouched. Importing this module imports no third-party package.
"""

from __future__ import annotations

import functools
import os
import re
import sys
import tempfile
import threading
from dataclasses import dataclass

from common.errors import TraitcacheError

VERBOSE_VARIABLE = "TRAITCACHE_VERBOSE"  # set to 1 (or anything but 0) to see every start-up line
LOG_LEVEL_VARIABLE = "TF_CPP_MIN_LOG_LEVEL"
# 1 drops C++ INFO records logged after absl's initialisation (e.g. the two-line
# cpu_feature_guard notice, GPU device creation) at their source; warnings and errors stay.
QUIET_LOG_LEVEL = "1"
STDERR = 2  # file descriptor

BANNER = rb"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
# absl's record header: severity, MMDD, time, thread id, source file:line, "] ". Before
# absl's initialisation the date reads 0000 and the seconds count from 1970.
RECORD = rb"(?P<severity>[IWEF])\d{4} \d\d:\d\d:\d+\.\d+ +\d+ (?P<source>[\w.]+):\d+\] (?P<message>.*)"
# Second line of cpu_feature_guard's INFO record, which has no header of its own.
INSTRUCTIONS = rb"To enable the following instructions: .* rebuild TensorFlow with the appropriate compiler flags\."
# A record may follow other text on the same line (a progress bar's); it runs to the line's end.
LOG_LINE = re.compile(rb"(?:(?P<banner>" + BANNER + rb")|" + RECORD + rb"|(?P<instructions>" + INSTRUCTIONS + rb"))$")
NO_DRIVER = b"Could not find cuda drivers"
CUINIT_SOURCE, CUINIT_FAILURE = b"cuda_platform.cc", b"failed call to cuInit"
# Logged as an error once per process on CPUs without AVX-512 float16; TensorFlow goes on
# with its own float16 kernels, so it asks nothing of the user.
HALF_SOURCE, HALF_ADVICE = b"util.cc", b"oneDNN supports DT_HALF only on platforms with AVX-512"
# One diversion at a time per process: a second thread's would take the first one's file for
# the real stderr (threads of a Dask worker may start TensorFlow together).
DIVERTING = threading.RLock()


@dataclass
class NoiseFilter:
    """Decides, line by line, what of TensorFlow's start-up output is noise.

    Noise: absl's pre-initialisation banner, every C++ INFO record (what
    ``TF_CPP_MIN_LOG_LEVEL=1`` promises), the headerless second line of the CPU
    instructions notice, the oneDNN ``DT_HALF`` advice, and the cuInit failure once
    TensorFlow has said that the machine has no CUDA driver (on a machine with a
    driver the same failure is a real error, and shows). Every other line, warnings
    and errors included, is kept.
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

    def kept(self, text: bytes) -> bytes:
        """What to print of ``text``, line by line; an unfinished last line is kept as it is."""
        *lines, unfinished = text.split(b"\n")
        return b"".join(self.keep(line) for line in lines) + unfinished

    def _drops(self, found: re.Match) -> bool:
        if found["banner"] or found["instructions"]:
            return True
        if found["severity"] == b"I":
            self.no_driver = self.no_driver or found["message"].startswith(NO_DRIVER)
            return True
        if found["source"] == HALF_SOURCE and found["message"].startswith(HALF_ADVICE):
            return True
        return self.no_driver and found["source"] == CUINIT_SOURCE and found["message"].startswith(CUINIT_FAILURE)


def verbose_requested(environ=os.environ) -> bool:
    """True when ``TRAITCACHE_VERBOSE`` asks for every start-up line."""
    return environ.get(VERBOSE_VARIABLE, "0").strip() not in ("", "0")


def show_everything() -> None:
    """Let TensorFlow's start-up lines through, in this process and the ones it starts later."""
    os.environ[VERBOSE_VARIABLE] = "1"


class QuietStderr:
    """File descriptor 2 diverted to a temporary file from ``with`` until `release`
    (or the block's end), then what was not noise copied to the real stderr.

    Everything written meanwhile, by this process, its threads or the processes it
    starts, comes out after the release, in order and unchanged but for TensorFlow's
    start-up notices (`NoiseFilter`). Does nothing when `verbose_requested`. Enter and
    release it in one thread; another thread's window waits for the release.
    """

    def __init__(self):
        self._captured = None
        self._original: int | None = None

    def __enter__(self) -> QuietStderr:
        if verbose_requested():
            return self
        captured = tempfile.TemporaryFile()
        DIVERTING.acquire()
        sys.stderr.flush()
        self._captured = captured
        self._original = os.dup(STDERR)
        os.dup2(self._captured.fileno(), STDERR)
        return self

    def release(self) -> None:
        """Give stderr back and print what was written to it that is not noise; later calls do nothing."""
        if self._original is None:
            return
        sys.stderr.flush()
        os.dup2(self._original, STDERR)
        os.close(self._original)
        self._original = None
        DIVERTING.release()
        with self._captured as captured:
            captured.seek(0)
            text = NoiseFilter().kept(captured.read())
        with open(STDERR, "wb", closefd=False) as stderr:  # buffered: writes every byte
            stderr.write(text)

    def __exit__(self, *exception) -> None:
        self.release()


class KerasBackendError(TraitcacheError):
    """Keras cannot start the backend it is configured for (``KERAS_BACKEND`` or keras.json)."""


@functools.cache
def start_tensorflow():
    """TensorFlow, imported and its devices listed once per process, its start-up notices hidden.

    Sets ``TF_CPP_MIN_LOG_LEVEL=1`` (which processes started later inherit) unless the
    user set it or `verbose_requested`.

    Returns
    -------
    module
        ``tensorflow``.
    """
    if not verbose_requested():
        os.environ.setdefault(LOG_LEVEL_VARIABLE, QUIET_LOG_LEVEL)
    with QuietStderr():
        import tensorflow as tf

        tf.config.list_physical_devices()
    return tf


@functools.cache
def start_keras():
    """Keras, after `start_tensorflow`, once per process.

    Returns
    -------
    module
        ``keras``.

    Raises
    ------
    KerasBackendError
        Keras' configured backend is not installed or not a backend, in one line that
        says how to fix it.
    """
    start_tensorflow()
    try:
        import keras
    # Keras raises ImportError for a backend whose package is missing and ValueError for an unknown name.
    except (ImportError, ValueError) as error:
        backend = os.environ.get("KERAS_BACKEND")
        source = f"KERAS_BACKEND={backend}" if backend else "the backend in ~/.keras/keras.json"
        raise KerasBackendError(
            f"{source}: Keras cannot start it ({str(error).splitlines()[0]}); "
            "unset KERAS_BACKEND (or set it to tensorflow) to use TensorFlow, or install that backend's package"
        ) from error
    return keras
