"""extract/cli.py through typer's CliRunner: flags, summary line and exit codes."""

from __future__ import annotations

import shutil

import numpy as np
from typer.testing import CliRunner

from cache.reader import CacheReader
from extract.cli import EXIT_PARTIAL, EXIT_USAGE, app

runner = CliRunner()
TINY = ["--weights", "none", "--frames", "4", "--crop-size", "32", "--jobs", "1", "--quiet"]


def test_full_size_defaults_on_a_generated_clip(face_clip, tmp_path):
    data = tmp_path / "train"
    data.mkdir()
    shutil.copyfile(face_clip, data / "astronaut.mp4")
    result = runner.invoke(app, [str(data), "--cache", str(tmp_path / "cache"), "--weights", "none", "--jobs", "1", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "1 extracted, 0 reused, 0 already cached, 0 failed" in result.output
    arrays = CacheReader(tmp_path / "cache").read("train", ("face_embeddings", "face_crops", "face_found"))
    assert arrays["face_embeddings"].shape == (1, 10, 2048) and arrays["face_crops"].shape == (1, 10, 224, 224, 3)
    assert arrays["face_found"].all() and np.isfinite(arrays["face_embeddings"].astype(np.float32)).all()


def test_a_partial_failure_exits_1_and_points_at_the_failures_file(clip_folder, tmp_path):
    data = tmp_path / "validation"
    shutil.copytree(clip_folder / "validation", data)
    (data / "broken.mp4").write_bytes(b"\x00" * 100)
    result = runner.invoke(app, [str(data), "--cache", str(tmp_path / "cache"), *TINY])
    assert result.exit_code == EXIT_PARTIAL
    assert f"1 failed: see {tmp_path / 'cache' / 'failures.csv'}" in result.output


def test_bad_labels_stop_before_any_decoding(clip_folder, tmp_path):
    labels = tmp_path / "labels.csv"
    labels.write_text("video_id,openness\nvalidation0.mp4,1.5\n")
    result = runner.invoke(app, [str(clip_folder / "validation"), "--cache", str(tmp_path / "cache"), "--labels", str(labels), *TINY])
    assert result.exit_code == EXIT_USAGE
    assert "outside [0, 1]" in result.output and str(labels) in result.output
    assert not list((tmp_path / "cache").glob("shard-*.h5"))


def test_an_invalid_option_is_a_usage_error(clip_folder, tmp_path):
    result = runner.invoke(app, [str(clip_folder / "validation"), "--cache", str(tmp_path / "cache"), *TINY, "--sampling", "sideways"])
    assert result.exit_code == EXIT_USAGE and "--sampling must be one of" in result.output


def test_a_mismatched_cache_is_refused(clip_folder, tmp_path):
    cache_dir = str(tmp_path / "cache")
    assert runner.invoke(app, [str(clip_folder / "validation"), "--cache", cache_dir, *TINY]).exit_code == 0
    result = runner.invoke(app, [str(clip_folder / "validation"), "--cache", cache_dir, *TINY, "--crop-size", "48"])
    assert result.exit_code == EXIT_USAGE and "crop_size: 32 -> 48" in result.output
