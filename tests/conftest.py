"""Fixtures shared by the tests: generated clips with a real face and a sound track."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from common.errors import flag_name  # noqa: E402
from extract.config import ExtractOptions  # noqa: E402
from extract.synthetic import talking_head_clip  # noqa: E402

CHALEARN = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "chalearn"


@pytest.fixture(scope="session")
def face_clip(tmp_path_factory) -> Path:
    """A 3 s 320x240 h264 + AAC clip of the astronaut's face with a 220 Hz tone."""
    return talking_head_clip(tmp_path_factory.mktemp("clips") / "astronaut.mp4", seconds=3.0)


@pytest.fixture(scope="session")
def clip_folder(tmp_path_factory) -> Path:
    """train/ with three clips and validation/ with one, each of different brightness and pitch."""
    root = tmp_path_factory.mktemp("dataset")
    for offset, (split, count) in enumerate((("train", 3), ("validation", 1))):
        (root / split).mkdir()
        for index in range(count):
            # Distinct bytes per clip: identical files would be recognised as one video.
            variant = index + 3 * offset
            talking_head_clip(
                root / split / f"{split}{index}.mp4",
                seconds=2.0,
                brightness=0.6 + 0.12 * variant,
                frequency=180.0 + 90 * variant,
            )
    return root


TINY_EXTRACTION = {"frames": 4, "crop_size": 32, "weights": "none", "jobs": 1}  # the real pipeline, 2-core sized


@pytest.fixture
def tiny_options() -> ExtractOptions:
    """Real pipeline, small enough for a 2-core test run: 4 frames, 32 px crops, random weights."""
    return ExtractOptions.from_dict(TINY_EXTRACTION)


@pytest.fixture
def tiny_flags() -> list[str]:
    """``python -m extract`` flags of ``tiny_options``, without progress bars."""
    return [*(text for name, value in TINY_EXTRACTION.items() for text in (flag_name(name), str(value))), "--quiet"]


# Root reads and lists whatever the mode through these two capabilities; a child without them
# (its bounding set, which a root child's capabilities are drawn from at exec) obeys file modes.
FILE_MODE_CAPABILITIES = "-dac_override,-dac_read_search"
CHILD_TIMEOUT = 60  # seconds for a child Python that imports extract and looks at a few files


@pytest.fixture
def run_obeying_file_modes():
    """Run a Python snippet in a child that obeys file modes even when the tests run as root
    (``setpriv`` drops the capabilities that let root ignore them); its stdout, or fail the test."""

    def run(code: str, *arguments: str) -> str:
        prefix = ["setpriv", f"--bounding-set={FILE_MODE_CAPABILITIES}", "--"] if os.geteuid() == 0 else []
        result = subprocess.run(
            [*prefix, sys.executable, "-c", code, *arguments], capture_output=True, text=True, timeout=CHILD_TIMEOUT
        )
        assert result.returncode == 0, result.stderr[-2000:]
        return result.stdout

    return run


@pytest.fixture
def run_as_a_terminal_job(tmp_path):
    """Run a command as a terminal runs a job: in a process group (session) of its own, so
    that a Ctrl-C it sends to its group reaches its worker processes and no test process.
    Every Python process of the run first imports ``hook`` (its ``sitecustomize``), which
    reads its settings from ``environment``; the group is killed after ``timeout`` seconds."""

    def run(command: list[str], hook: str, environment: dict[str, str], timeout: float):
        site = tmp_path / "site"
        site.mkdir(exist_ok=True)
        (site / "sitecustomize.py").write_text(hook)
        search_path = os.pathsep.join([str(Path(__file__).parents[1]), str(site)])
        process = subprocess.Popen(
            command,
            env={**os.environ, **environment, "PYTHONPATH": search_path},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            output, errors = process.communicate(timeout=timeout)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=timeout)
        return subprocess.CompletedProcess(command, process.returncode, output, errors)

    return run


@pytest.fixture(scope="session")
def chalearn() -> Path:
    """The real ChaLearn sample clips and annotation pickles (skip when absent)."""
    if not CHALEARN.is_dir():
        pytest.skip(f"{CHALEARN} not present (it ships only with the project's shared folder)")
    return CHALEARN
