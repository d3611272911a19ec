"""cache.stderr_filter: TensorFlow's start-up notices dropped, its warnings and errors kept."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from cache.stderr_filter import LOG_LEVEL_VARIABLE, VERBOSE_VARIABLE, StartupLineFilter, verbose_requested

# Lines TensorFlow 2.21 printed on the 2-core build machine (no GPU driver) while importing.
BANNER = b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
ONEDNN = (
    b"I0000 00:00:1795964611.641802    1018 port.cc:153] oneDNN custom operations are on. You may see slightly"
    b" different numerical results due to floating-point round-off errors from different computation orders."
    b" To turn them off, set the environment variable `TF_ENABLE_ONEDNN_OPTS=0`."
)
NO_DRIVER = (
    b"I0000 00:00:1795964611.642212    1018 cudart_stub.cc:31] Could not find cuda drivers on your machine,"
    b" GPU will not be used."
)
CPU_FEATURES = (
    b"I0000 00:00:1795964350.176087   31093 cpu_feature_guard.cc:227] This TensorFlow binary is optimized to use"
    b" available CPU instructions in performance-critical operations."
)
INSTRUCTIONS = (
    b"To enable the following instructions: AVX2 AVX512F FMA, in other operations, rebuild TensorFlow"
    b" with the appropriate compiler flags."
)
CUINIT = (
    b"E0000 00:00:1795964621.285006    1018 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error:"
    b" Failed call to cuInit: UNKNOWN ERROR (303)"
)
OP_FAILED = (
    b"W0000 00:00:1795964621.361097    1018 op_kernel.cc:1858] OP_REQUIRES failed at whole_file_read_ops.cc:117 :"
    b" NOT_FOUND: /missing.bin; No such file or directory"
)
# One word of each start-up line.
STARTUP_WORDS = ("absl::InitializeLog", "port.cc", "cudart_stub.cc", "cpu_feature_guard.cc", "cuInit")
TENSORFLOW_START = 300  # seconds: importing TensorFlow took up to 40 s on a busy 2-core machine


def environment(**changes) -> dict:
    """This environment without the variables that change TensorFlow's logging (conftest sets one)."""
    clean = {name: value for name, value in os.environ.items() if name not in (LOG_LEVEL_VARIABLE, VERBOSE_VARIABLE)}
    return {**clean, **changes}


def run_python(code: str, **changes) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, env=environment(**changes), timeout=TENSORFLOW_START
    )


def test_startup_lines_are_dropped_and_warnings_kept():
    line_filter = StartupLineFilter()
    lines = [
        BANNER,
        ONEDNN,
        NO_DRIVER,
        CPU_FEATURES,
        INSTRUCTIONS,
        CUINIT,
        OP_FAILED,
        b"error: /data/clip.mp4: cannot decode",
    ]
    assert (
        b"".join(line_filter.keep(line) for line in lines)
        == OP_FAILED + b"\n" + b"error: /data/clip.mp4: cannot decode\n"
    )


def test_cuinit_failure_shows_when_no_missing_driver_was_reported():
    # On a machine with a GPU driver the same record is a real error.
    assert StartupLineFilter().keep(CUINIT) == CUINIT + b"\n"


def test_a_record_after_a_progress_bar_keeps_the_bar():
    bar = "\rextracting:  50%|█████     | 1/2".encode()
    line_filter = StartupLineFilter()
    assert line_filter.keep(bar + BANNER) == bar
    assert line_filter.keep(bar + OP_FAILED) == bar + OP_FAILED + b"\n"


@pytest.mark.parametrize(("value", "verbose"), [(None, False), ("", False), ("0", False), ("1", True), ("yes", True)])
def test_verbose_variable(value, verbose):
    assert verbose_requested({} if value is None else {VERBOSE_VARIABLE: value}) is verbose


# A process that writes start-up lines to file descriptor 2 directly, as TensorFlow's
# C++ code does, itself and through a process it starts (argv[1] and argv[2], hex), then
# ends on a line without its newline (a progress bar's last state). With argv[3]
# "--verbose" it takes stderr back and writes argv[4] as well.
WRITER = """
import os, subprocess, sys
from cache.stderr_filter import quiet_startup, show_startup_messages
quiet_startup()
os.write(2, bytes.fromhex(sys.argv[1]))
child = "import os, sys; os.write(2, bytes.fromhex(sys.argv[1]))"
subprocess.run([sys.executable, "-c", child, sys.argv[2]], check=True)
print(os.environ.get("TF_CPP_MIN_LOG_LEVEL"), file=sys.stderr)
if sys.argv[3:4] == ["--verbose"]:
    show_startup_messages()
    os.write(2, bytes.fromhex(sys.argv[4]))
sys.stderr.write("100%|done")
"""
OWN_LINES = BANNER + b"\n" + NO_DRIVER + b"\n" + OP_FAILED + b"\n"
CHILD_LINES = ONEDNN + b"\n" + CUINIT + b"\n"


def run_writer(after_verbose: bytes | None = None, **changes) -> subprocess.CompletedProcess:
    arguments = [
        OWN_LINES.hex(),
        CHILD_LINES.hex(),
        *(("--verbose", after_verbose.hex()) if after_verbose is not None else ()),
    ]
    return subprocess.run(
        [sys.executable, "-c", WRITER, *arguments],
        capture_output=True,
        env=environment(**changes),
        timeout=TENSORFLOW_START,
    )


def test_filter_covers_the_process_and_its_children():
    result = run_writer()
    assert result.returncode == 0, result.stderr
    assert result.stderr == OP_FAILED + b"\n" + b"1\n" + b"100%|done"


def test_user_log_level_is_kept():
    result = run_writer(**{LOG_LEVEL_VARIABLE: "3"})
    assert b"\n3\n" in result.stderr


def test_verbose_variable_leaves_stderr_alone():
    result = run_writer(**{VERBOSE_VARIABLE: "1"})
    assert result.returncode == 0, result.stderr
    assert result.stderr == OWN_LINES + CHILD_LINES + b"None\n" + b"100%|done"


def test_show_startup_messages_gives_stderr_back():
    result = run_writer(ONEDNN + b"\n")
    assert result.returncode == 0, result.stderr
    assert result.stderr == OP_FAILED + b"\n" + b"1\n" + ONEDNN + b"\n" + b"100%|done"


TENSORFLOW_WARNING = """
from cache.stderr_filter import quiet_startup
quiet_startup()
import tensorflow as tf
try:
    tf.io.read_file("/no/such/file.bin")
except tf.errors.NotFoundError:
    pass
"""


def test_real_tensorflow_startup_is_quiet_and_its_warnings_show():
    quiet = run_python(TENSORFLOW_WARNING).stderr.decode()
    loud = run_python(TENSORFLOW_WARNING, **{VERBOSE_VARIABLE: "1"}).stderr.decode()
    assert all(word in loud for word in ("absl::InitializeLog", "port.cc", "cudart_stub.cc")), (
        loud
    )  # what there is to drop
    assert not [word for word in STARTUP_WORDS if word in quiet], quiet
    assert "OP_REQUIRES failed" in quiet and "/no/such/file.bin" in quiet, quiet  # a real warning from TensorFlow's C++


def test_real_extraction_prints_only_its_own_lines(face_clip, tmp_path, tiny_flags):
    command = [sys.executable, "-m", "extract", str(face_clip), "--cache", str(tmp_path / "cache"), *tiny_flags]
    result = subprocess.run(command, capture_output=True, text=True, env=environment(), timeout=TENSORFLOW_START)
    assert result.returncode == 0, result.stderr
    assert "1 extracted" in result.stdout
    assert result.stderr == ""
