"""common.quiet: TensorFlow's start-up notices hidden where they are printed, its warnings kept,
and stderr the terminal itself the rest of the time."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import shutil
import struct
import subprocess
import sys
import termios
import time

import pytest

from common.quiet import LOG_LEVEL_VARIABLE, LOG_LINE, VERBOSE_VARIABLE, NoiseFilter, verbose_requested

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
# Logged at the first fit on CPUs without AVX-512 float16 (TensorFlow's util.cc).
HALF = (
    b"E0000 00:00:1795964700.100200    1018 util.cc:169] oneDNN supports DT_HALF only on platforms with AVX-512."
    b" Falling back to the default Eigen-based implementation if present."
)
OP_FAILED = (
    b"W0000 00:00:1795964621.361097    1018 op_kernel.cc:1858] OP_REQUIRES failed at whole_file_read_ops.cc:117 :"
    b" NOT_FOUND: /missing.bin; No such file or directory"
)
TENSORFLOW_START = 300  # seconds: importing TensorFlow took up to 40 s on a busy 2-core machine


def environment(**changes) -> dict:
    """This environment without the variables that change TensorFlow's logging (conftest sets one)
    or the terminal width tqdm would read."""
    dropped = (LOG_LEVEL_VARIABLE, VERBOSE_VARIABLE, "COLUMNS", "LINES")
    clean = {name: value for name, value in os.environ.items() if name not in dropped}
    return {**clean, **changes}


def run_python(code: str, *arguments: str, **changes) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code, *arguments],
        capture_output=True,
        env=environment(**changes),
        timeout=TENSORFLOW_START,
    )


def records(stderr: bytes) -> set[tuple[bytes, bytes]]:
    """(severity, source file) of each absl record in ``stderr``."""
    found = (LOG_LINE.search(line) for line in stderr.splitlines())
    return {(match["severity"], match["source"]) for match in found if match is not None and match["severity"]}


def test_startup_lines_are_dropped_and_warnings_kept():
    line_filter = NoiseFilter()
    lines = [
        BANNER,
        ONEDNN,
        NO_DRIVER,
        CPU_FEATURES,
        INSTRUCTIONS,
        CUINIT,
        HALF,
        OP_FAILED,
        b"error: /data/clip.mp4: cannot decode",
    ]
    assert (
        b"".join(line_filter.keep(line) for line in lines)
        == OP_FAILED + b"\n" + b"error: /data/clip.mp4: cannot decode\n"
    )


def test_cuinit_failure_shows_when_no_missing_driver_was_reported():
    # On a machine with a GPU driver the same record is a real error.
    assert NoiseFilter().keep(CUINIT) == CUINIT + b"\n"


def test_a_record_after_a_progress_bar_keeps_the_bar():
    bar = "\rextracting:  50%|█████     | 1/2".encode()
    line_filter = NoiseFilter()
    assert line_filter.keep(bar + BANNER) == bar
    assert line_filter.keep(bar + OP_FAILED) == bar + OP_FAILED + b"\n"


@pytest.mark.parametrize(("value", "verbose"), [(None, False), ("", False), ("0", False), ("1", True), ("yes", True)])
def test_verbose_variable(value, verbose):
    assert verbose_requested({} if value is None else {VERBOSE_VARIABLE: value}) is verbose


# Writes start-up lines to file descriptor 2 directly, as TensorFlow's C++ code does, itself
# and through a process it starts (argv[1] and argv[2], hex), inside a QuietStderr window;
# then lines after it, a window released early, and a Python error inside a last window.
WRITER = """
import os, subprocess, sys
from common.quiet import QuietStderr
os.write(2, b"before\\n")
with QuietStderr():
    os.write(2, bytes.fromhex(sys.argv[1]))
    child = "import os, sys; os.write(2, bytes.fromhex(sys.argv[1]))"
    subprocess.run([sys.executable, "-c", child, sys.argv[2]], check=True)
    print("a python warning", file=sys.stderr)
os.write(2, b"after\\n")
with QuietStderr() as quiet:
    os.write(2, b"released early\\n")
    quiet.release()
    os.write(2, b"after the release\\n")
with QuietStderr():
    raise RuntimeError("a real error inside the window")
"""
OWN_LINES = BANNER + b"\n" + NO_DRIVER + b"\n" + OP_FAILED + b"\n"
CHILD_LINES = ONEDNN + b"\n" + CUINIT + b"\n"
KEPT = b"before\n" + OP_FAILED + b"\n" + b"a python warning\n" + b"after\n" + b"released early\nafter the release\n"


def test_a_window_hides_the_noise_of_the_process_and_its_children_and_gives_stderr_back():
    result = run_python(WRITER, OWN_LINES.hex(), CHILD_LINES.hex())
    assert result.returncode == 1
    assert result.stderr.startswith(KEPT), result.stderr
    assert result.stderr.endswith(b"RuntimeError: a real error inside the window\n"), result.stderr


def test_verbose_variable_leaves_stderr_alone():
    result = run_python(WRITER, OWN_LINES.hex(), CHILD_LINES.hex(), **{VERBOSE_VARIABLE: "1"})
    expected = b"before\n" + OWN_LINES + CHILD_LINES + b"a python warning\n" + b"after\n"
    assert result.stderr.startswith(expected + b"released early\nafter the release\n"), result.stderr
    assert result.stderr.endswith(b"RuntimeError: a real error inside the window\n"), result.stderr


# Two threads open windows at the same moment, as threads of a Dask worker may start TensorFlow together.
THREADS = """
import os, threading, time
from common.quiet import QuietStderr
def window(name):
    with QuietStderr():
        os.write(2, name + b" inside\\n")
        time.sleep(0.5)
threads = [threading.Thread(target=window, args=(name,)) for name in (b"one", b"two")]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
os.write(2, b"after both\\n")
"""


def test_windows_of_two_threads_give_every_line_and_stderr_back():
    result = run_python(THREADS)
    assert result.returncode == 0, result.stderr
    assert sorted(result.stderr.splitlines()) == [b"after both", b"one inside", b"two inside"], result.stderr
    assert result.stderr.endswith(b"after both\n")


# What the commands do first with TensorFlow, then a warning from its C++ code after start-up.
TENSORFLOW_WARNING = """
import os
from common.quiet import start_tensorflow
tf = start_tensorflow()
os.write(2, b"started\\n")
print("log level", os.environ.get("TF_CPP_MIN_LOG_LEVEL"), flush=True)
try:
    tf.io.read_file("/no/such/file.bin")
except tf.errors.NotFoundError:
    pass
"""


@pytest.fixture(scope="module")
def bare_startup() -> bytes:
    """What TensorFlow prints on this machine when imported and asked for its devices, untouched."""
    result = run_python("import tensorflow as tf; tf.config.list_physical_devices()")
    assert result.returncode == 0, result.stderr
    return result.stderr


def test_real_tensorflow_startup_is_quiet_and_its_warnings_show(bare_startup):
    assert records(bare_startup)  # what there is to hide: TensorFlow 2.21 logs its oneDNN notice at least
    quiet = run_python(TENSORFLOW_WARNING)
    assert quiet.returncode == 0, quiet.stderr
    assert b"log level 1" in quiet.stdout
    startup, after = quiet.stderr.split(b"started\n")
    shown = records(startup)
    assert BANNER not in startup and not {record for record in shown if record[0] == b"I"}, startup
    # Only warnings and errors TensorFlow itself prints at start-up on this machine (none on the build machine).
    assert shown <= {record for record in records(bare_startup) if record[0] != b"I"}, startup
    assert b"OP_REQUIRES failed" in after and b"/no/such/file.bin" in after, after


def test_verbose_shows_every_line_tensorflow_prints_at_start_up(bare_startup):
    loud = run_python(TENSORFLOW_WARNING, **{VERBOSE_VARIABLE: "1"})
    assert loud.returncode == 0, loud.stderr
    assert records(bare_startup) <= records(loud.stderr), loud.stderr
    assert (BANNER in loud.stderr) == (BANNER in bare_startup)


def test_real_extraction_prints_only_its_own_lines(face_clip, tmp_path, tiny_flags, bare_startup):
    command = [sys.executable, "-m", "extract", str(face_clip), "--cache", str(tmp_path / "cache"), *tiny_flags]
    result = subprocess.run(command, capture_output=True, env=environment(), timeout=TENSORFLOW_START)
    assert result.returncode == 0, result.stderr
    assert b"1 extracted" in result.stdout
    # --quiet on a run without failures: the command itself writes nothing to stderr; what
    # may show are warnings or errors TensorFlow prints at start-up on this machine.
    allowed = {record for record in records(bare_startup) if record[0] != b"I"}
    assert all(LOG_LINE.search(line) for line in result.stderr.splitlines()), result.stderr
    assert records(result.stderr) <= allowed, result.stderr


def test_a_keras_backend_that_cannot_start_is_one_line_and_exit_2(tmp_path):
    out = tmp_path / "run"
    command = [sys.executable, "-m", "train", "fit", "--cache", str(tmp_path / "cache"), "--out", str(out)]
    result = subprocess.run(
        command, capture_output=True, text=True, env=environment(KERAS_BACKEND="torch"), timeout=TENSORFLOW_START
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "error: KERAS_BACKEND=torch: Keras cannot start it (No module named 'torch'); unset KERAS_BACKEND "
        "(or set it to tensorflow) to use TensorFlow, or install that backend's package"
    ]
    assert not out.exists()


TERMINAL_COLUMNS = 97  # an unusual width: a bar drawn this wide read it from the terminal
RUNS_UNDER_A_TERMINAL = 3  # each is a real extraction (~5-10 s); 20 in a row were run by hand (see the README)


def run_in_terminal(command: list[str]) -> bytes:
    """Everything ``command`` writes to its stdout and stderr, both a pseudo-terminal of TERMINAL_COLUMNS."""
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, TERMINAL_COLUMNS, 0, 0))
    process = subprocess.Popen(command, stdout=terminal, stderr=terminal, env=environment())
    os.close(terminal)
    output = b""
    deadline = time.monotonic() + TENSORFLOW_START
    try:
        while time.monotonic() < deadline:
            if select.select([controller], [], [], 1.0)[0]:
                try:
                    chunk = os.read(controller, 65536)
                except OSError:  # the last holder of the terminal closed it
                    break
                if not chunk:
                    break
                output += chunk
        process.wait(timeout=10)
    finally:
        process.kill()
        os.close(controller)
    return output


def test_under_a_terminal_bars_redraw_in_place_errors_show_and_the_summary_is_the_last_line(
    clip_folder, tmp_path, tiny_flags
):
    data = tmp_path / "validation"
    shutil.copytree(clip_folder / "validation", data)
    (data / "broken.mp4").write_bytes(b"\x00" * 100)
    flags = [flag for flag in tiny_flags if flag != "--quiet"]
    for run in range(RUNS_UNDER_A_TERMINAL):
        cache = tmp_path / f"cache{run}"
        output = run_in_terminal([sys.executable, "-m", "extract", str(data), "--cache", str(cache), *flags])
        lines = [line for line in re.split(rb"\r\n|\n", output) if line.strip()]
        assert (
            lines[-1]
            == (
                f"1 extracted, 0 identical copies, 0 reused, 0 already cached, 1 failed: see {cache / 'failures.csv'}"
                " (1 video in the cache, 0 labelled)"
            ).encode()
        ), output
        assert f"failed: {data / 'broken.mp4'}: ".encode() in output  # an error after start-up
        assert b"loading TensorFlow and ResNet50" in output
        # The bar redraws in place, its updates on one line (\r, no newline), as wide as the terminal.
        bar = next(line for line in lines if b"extracting: 100%" in line)
        states = [state for state in bar.split(b"\r") if state.startswith(b"extracting:")]
        assert len(states) >= 2 and {len(state.decode()) for state in states} == {TERMINAL_COLUMNS - 1}, bar
