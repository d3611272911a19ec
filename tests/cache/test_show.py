"""cache.show and `python -m cache show`: contact sheets of real extracted videos."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from matplotlib.image import imread
from typer.testing import CliRunner

from cache.cli import app
from cache.reader import CacheReader
from cache.show import (
    BORROWED_COLOUR,
    CELL_INCHES,
    DOTS_PER_INCH,
    FOUND_COLOUR,
    GAP_INCHES,
    LABEL_INCHES,
    TITLE_INCHES,
    read_rows,
)
from common.errors import ExitCode
from extract.config import ExtractOptions
from extract.run import extract_to_cache
from extract.synthetic import compose_frame, face_image, talking_head_clip, write_clip, write_timed_clip
from extract.video import decode

FRAMES = 4  # T of the test caches: samples at 0.24, 0.76, 1.24 and 1.76 s of a 2 s clip
CLIP_RATE = 25  # frames per second
FACE_FRAMES = 25  # the half-face clip shows the face for its first second, then grey
COLOUR_TOLERANCE = 0.02  # of full scale: PNG stores 8 bits per channel
IMPORT_TIMEOUT = 60  # seconds for a child Python to import the cache package; subprocess.run kills it after


def tiny(**changes) -> ExtractOptions:
    return ExtractOptions.from_dict({"frames": FRAMES, "crop_size": 32, "weights": "none", "jobs": 1, **changes})


def half_face_clip(path):
    """2 s at 25 fps: the astronaut's face for the first second, an empty grey frame after."""
    face = compose_frame(face_image(), 320, 240, (0.5, 0.5), 0.9, 1.0)
    empty = np.full_like(face, 96)
    return write_clip(path, [face if index < FACE_FRAMES else empty for index in range(2 * CLIP_RATE)], fps=CLIP_RATE)


@pytest.fixture(scope="module")
def crops_cache(tmp_path_factory):
    """A cache with crops of face.mp4, half.mp4 (faces in its first half only) and gone.mp4,
    whose file is deleted after the extraction."""
    root = tmp_path_factory.mktemp("show")
    (root / "train").mkdir()
    talking_head_clip(root / "train" / "face.mp4", seconds=2.0)
    half_face_clip(root / "train" / "half.mp4")
    talking_head_clip(root / "train" / "gone.mp4", seconds=2.0, brightness=0.8)
    extract_to_cache([str(root / "train")], root / "cache", [], tiny(), show_progress=False)
    (root / "train" / "gone.mp4").unlink()
    return root / "cache"


@pytest.fixture(scope="module")
def cropless_cache(tmp_path_factory):
    root = tmp_path_factory.mktemp("show-no-crops")
    (root / "train").mkdir()
    talking_head_clip(root / "train" / "face.mp4", seconds=2.0)
    extract_to_cache([str(root / "train")], root / "cache", [], tiny(keep_crops=False), show_progress=False)
    return root / "cache"


def run(*arguments):
    return CliRunner().invoke(app, [str(argument) for argument in arguments])


def face_found(cache_dir, video_id):
    arrays = CacheReader(cache_dir).read("train", ("video_id", "face_found"))
    return arrays["face_found"][list(arrays["video_id"]).index(video_id)]


def border_colour(image, line, column):
    """RGB on the left border of a tile, half way down (see draw_sheet's layout)."""
    x = (LABEL_INCHES + column * CELL_INCHES + GAP_INCHES / 2) * DOTS_PER_INCH
    y = (line * (TITLE_INCHES + CELL_INCHES) + TITLE_INCHES + CELL_INCHES / 2) * DOTS_PER_INCH
    return image[int(y), int(x), :3]


def tile_interior(image, line, column):
    inset = GAP_INCHES  # inside the border
    left = (LABEL_INCHES + column * CELL_INCHES + inset) * DOTS_PER_INCH
    top = (line * (TITLE_INCHES + CELL_INCHES) + TITLE_INCHES + inset) * DOTS_PER_INCH
    side = (CELL_INCHES - 2 * inset) * DOTS_PER_INCH
    return image[int(top) : int(top + side), int(left) : int(left + side), :3]


def matches(pixels, colour):
    return np.all(np.abs(pixels - np.array(colour)) < COLOUR_TOLERANCE, axis=-1)


def test_sheet_marks_each_tile_found_or_borrowed(crops_cache, tmp_path):
    out = tmp_path / "sheet.png"
    result = run("show", crops_cache, "half.mp4", "face.mp4", "--out", out)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"wrote {out}: 2 videos"
    image = imread(out)
    assert image.shape[:2] == (
        round(2 * (TITLE_INCHES + CELL_INCHES) * DOTS_PER_INCH),
        round((LABEL_INCHES + FRAMES * CELL_INCHES) * DOTS_PER_INCH),
    )
    for line, video_id in enumerate(("half.mp4", "face.mp4")):
        found = face_found(crops_cache, video_id)
        for column, detected in enumerate(found):
            assert matches(border_colour(image, line, column), FOUND_COLOUR if detected else BORROWED_COLOUR), (
                video_id,
                column,
            )
    assert face_found(crops_cache, "half.mp4").tolist() == [True, True, False, False]  # the clip made both kinds
    assert face_found(crops_cache, "face.mp4").all()


def test_frames_add_a_row_with_the_detected_box(crops_cache, tmp_path):
    out = tmp_path / "frames.png"
    result = run("show", crops_cache, "face.mp4", "--out", out, "--frames")
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    image = imread(out)
    assert image.shape[0] == round(2 * (TITLE_INCHES + CELL_INCHES) * DOTS_PER_INCH)  # crops, then frames
    for column in range(FRAMES):
        assert matches(border_colour(image, 1, column), FOUND_COLOUR)
        assert matches(tile_interior(image, 1, column), FOUND_COLOUR).sum() > 0, column  # the box
        assert not matches(tile_interior(image, 0, column), FOUND_COLOUR).any(), column  # a crop has none


def test_frames_are_the_ones_the_extraction_sampled_upright(tmp_path):
    """A portrait phone clip (rotation tag) starting late, at a variable rate: every frame differs."""
    (tmp_path / "train").mkdir()
    face = face_image()
    times_ms = np.cumsum([400] + [120 if index % 3 == 0 else 40 for index in range(49)])
    pictures = [
        compose_frame(face, 96, 64, (0.3 + 0.4 * index / 50, 0.5), 0.8, 0.6 + 0.4 * index / 50) for index in range(50)
    ]
    source = write_timed_clip(tmp_path / "train" / "phone.mp4", pictures, times_ms, rotation=90)
    options = tiny(frames_per_segment=2)
    extract_to_cache([str(tmp_path / "train")], tmp_path / "cache", [], options, show_progress=False)
    rows, warnings = read_rows(tmp_path / "cache", ["phone.mp4"], with_frames=True)
    assert warnings == []
    extracted = decode(source, options.decode)
    assert rows[0].frames.shape == (2 * FRAMES, 96, 64, 3)  # portrait: turned upright as the extraction saw it
    np.testing.assert_array_equal(rows[0].frame_times, extracted.frame_times)
    np.testing.assert_array_equal(rows[0].frames, extracted.frames)


def test_missing_source_warns_and_still_shows_the_crops(crops_cache, tmp_path):
    out = tmp_path / "sheet.png"
    result = run("show", crops_cache, "gone.mp4", "--out", out, "--frames")
    assert result.exit_code == 0, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning: ") and "gone.mp4: source video not found" in lines[0], (
        result.stderr
    )
    assert imread(out).shape[0] == round((TITLE_INCHES + CELL_INCHES) * DOTS_PER_INCH)  # the crops row alone


def test_unknown_video_names_it_and_how_to_list_ids(crops_cache, tmp_path):
    out = tmp_path / "sheet.png"
    result = run("show", crops_cache, "face.mp4", "nobody.mp4", "--out", out)
    assert result.exit_code == ExitCode.USAGE
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "nobody.mp4" in lines[0] and "python -m cache export" in lines[0], result.stderr
    assert not out.exists()


def test_a_cache_without_crops_needs_frames(cropless_cache, tmp_path):
    out = tmp_path / "sheet.png"
    refused = run("show", cropless_cache, "face.mp4", "--out", out)
    assert refused.exit_code == ExitCode.USAGE
    assert (
        "--no-crops" in refused.stderr
        and "--frames" in refused.stderr
        and len(refused.stderr.strip().splitlines()) == 1
    )
    assert not out.exists()
    shown = run("show", cropless_cache, "face.mp4", "--out", out, "--frames")
    assert shown.exit_code == 0, shown.output
    image = imread(out)
    assert image.shape[0] == round((TITLE_INCHES + CELL_INCHES) * DOTS_PER_INCH)  # the frames row alone
    assert matches(tile_interior(image, 0, 0), FOUND_COLOUR).sum() > 0


def test_unknown_image_format_is_a_usage_error(crops_cache, tmp_path):
    out = tmp_path / "sheet.unknown"
    result = run("show", crops_cache, "face.mp4", "--out", out)
    assert result.exit_code == ExitCode.USAGE
    assert str(out) in result.stderr and ".png" in result.stderr
    assert list(tmp_path.iterdir()) == []  # no temporary file left


def test_info_points_to_show(crops_cache):
    result = run("info", crops_cache)
    assert result.exit_code == 0, result.output
    assert f"python -m cache show {crops_cache} VIDEO_ID... --out sheet.png" in result.stdout


def test_show_imports_no_tensorflow():
    code = "import sys, cache, cache.cli, cache.show; assert 'tensorflow' not in sys.modules, 'tensorflow imported'"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=IMPORT_TIMEOUT)
    assert result.returncode == 0, result.stderr
