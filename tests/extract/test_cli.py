"""extract/cli.py through typer's CliRunner: flags, summary line and exit codes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

import extract.embed
from cache.lock import CacheLock
from cache.reader import CacheReader
from cache.schema import DEFAULT_CACHE
from common.errors import ExitCode, flag_name
from common.options import leaf_fields
from extract.audio import AudioOptions, audio_features
from extract.cli import app
from extract.config import ExtractOptions
from extract.faces import load_cascade
from extract.video import DecodeOptions, decode

runner = CliRunner()


def test_full_size_defaults_on_a_generated_clip(face_clip, tmp_path):
    data = tmp_path / "train"
    data.mkdir()
    shutil.copyfile(face_clip, data / "astronaut.mp4")
    result = runner.invoke(
        app, [str(data), "--cache", str(tmp_path / "cache"), "--weights", "none", "--jobs", "1", "--quiet"]
    )
    assert result.exit_code == 0, result.output
    assert (
        "1 extracted, 0 identical copies, 0 reused, 0 already cached, 0 failed (1 video in the cache, 0 labelled)"
        in result.output
    )
    arrays = CacheReader(tmp_path / "cache").read("train", ("face_embeddings", "face_crops", "face_found"))
    assert arrays["face_embeddings"].shape == (1, 10, 2048) and arrays["face_crops"].shape == (1, 10, 224, 224, 3)
    assert arrays["face_found"].all() and np.isfinite(arrays["face_embeddings"].astype(np.float32)).all()


def test_a_partial_failure_exits_1_and_points_at_the_failures_file(clip_folder, tmp_path, tiny_flags):
    data = tmp_path / "validation"
    shutil.copytree(clip_folder / "validation", data)
    (data / "broken.mp4").write_bytes(b"\x00" * 100)
    result = runner.invoke(app, [str(data), "--cache", str(tmp_path / "cache"), *tiny_flags])
    assert result.exit_code == ExitCode.PARTIAL
    assert f"1 failed: see {tmp_path / 'cache' / 'failures.csv'}" in result.output
    assert f"failed: {data / 'broken.mp4'}: " in result.stderr


def test_bad_labels_stop_before_any_decoding(clip_folder, tmp_path, tiny_flags):
    labels = tmp_path / "labels.csv"
    labels.write_text("video_id,openness\nvalidation0.mp4,1.5\n")
    result = runner.invoke(
        app, [str(clip_folder / "validation"), "--cache", str(tmp_path / "cache"), "--labels", str(labels), *tiny_flags]
    )
    assert result.exit_code == ExitCode.USAGE
    assert "outside [0, 1]" in result.output and str(labels) in result.output
    assert not list((tmp_path / "cache").glob("shard-*.h5"))


def test_an_invalid_option_is_a_usage_error(clip_folder, tmp_path, tiny_flags):
    result = runner.invoke(
        app,
        [str(clip_folder / "validation"), "--cache", str(tmp_path / "cache"), *tiny_flags, "--sampling", "sideways"],
    )
    assert result.exit_code == ExitCode.USAGE and "error: --sampling must be one of" in result.stderr


@pytest.mark.parametrize(
    "flags",
    [
        ["--frames", "0"],
        ["--min-neighbors-floor", "12"],
        ["--audio-window", "0"],
        ["--batch-size", "0"],
        ["--videos-per-shard", "0"],
    ],
)
def test_a_refused_option_is_named_by_its_flag_and_nothing_is_written(flags, tmp_path, tiny_flags):
    result = runner.invoke(app, [str(tmp_path / "absent"), "--cache", str(tmp_path / "cache"), *tiny_flags, *flags])
    assert result.exit_code == ExitCode.USAGE and "Traceback" not in result.output
    assert result.stderr.startswith(f"error: {flags[0]} must be "), result.stderr
    assert _nothing_written(tmp_path / "cache")


def test_every_option_has_a_flag_with_its_help():
    help_text = "".join(runner.invoke(app, ["--help"], env={"COLUMNS": "200"}).output.split())
    for name, (field, _) in leaf_fields(ExtractOptions).items():
        flag = field.metadata["flag"] or flag_name(name)
        # Whitespace dropped: click wraps long help lines, some at a hyphen.
        assert "".join(f"{flag} {field.metadata['metavar'] or ''}".split()) in help_text, name
        assert "".join(field.metadata["help"].split()) in help_text, name


def test_a_mismatched_cache_is_refused(clip_folder, tmp_path, tiny_flags):
    cache_dir = str(tmp_path / "cache")
    assert runner.invoke(app, [str(clip_folder / "validation"), "--cache", cache_dir, *tiny_flags]).exit_code == 0
    result = runner.invoke(
        app, [str(clip_folder / "validation"), "--cache", cache_dir, *tiny_flags, "--crop-size", "48"]
    )
    assert result.exit_code == ExitCode.USAGE and "crop_size: 32 -> 48" in result.output


def _nothing_written(cache_dir) -> bool:
    return not cache_dir.exists() or not any(cache_dir.iterdir())


def test_a_missing_weights_file_is_one_line_and_exit_2(clip_folder, tmp_path, tiny_flags):
    missing = tmp_path / "missing.weights.h5"
    result = runner.invoke(
        app,
        [str(clip_folder / "validation"), "--cache", str(tmp_path / "cache"), *tiny_flags, "--weights", str(missing)],
    )
    assert result.exit_code == ExitCode.USAGE
    assert f"error: --weights {missing}: no such file" in result.stderr and "Traceback" not in result.output
    assert _nothing_written(tmp_path / "cache")


def test_unavailable_imagenet_weights_write_nothing_so_the_retry_with_other_weights_runs(
    clip_folder, tmp_path, monkeypatch, tiny_flags
):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-home"))
    # A real download attempt that fails at once: nothing listens on the discard port.
    monkeypatch.setattr(extract.embed, "IMAGENET_ORIGIN", "http://127.0.0.1:9/" + extract.embed.IMAGENET_FILE)
    cache_dir = tmp_path / "cache"
    args = [str(clip_folder / "validation"), "--cache", str(cache_dir), *tiny_flags, "--weights", "imagenet"]
    result = runner.invoke(app, args)
    assert result.exit_code == ExitCode.USAGE and "ImageNet weights are not cached" in result.stderr
    assert _nothing_written(cache_dir)
    retry = runner.invoke(app, args[:-2])  # without the last --weights: tiny_flags' own, none
    assert retry.exit_code == 0, retry.output


def test_an_empty_cache_left_with_another_config_does_not_block_the_next_run(clip_folder, tmp_path, tiny_flags):
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    (cache_dir / "config.json").write_text(json.dumps({"weights": "imagenet"}))
    result = runner.invoke(app, [str(clip_folder / "validation"), "--cache", str(cache_dir), *tiny_flags])
    assert result.exit_code == 0, result.output
    assert json.loads((cache_dir / "config.json").read_text())["weights"] == "none"


def test_a_locked_cache_is_exit_2_naming_the_holder(clip_folder, tmp_path, tiny_flags):
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    with CacheLock(cache_dir):
        result = runner.invoke(app, [str(clip_folder / "validation"), "--cache", str(cache_dir), *tiny_flags])
    assert result.exit_code == ExitCode.USAGE and "is writing to this cache" in result.stderr
    assert not list(cache_dir.glob("shard-*.h5"))


def test_a_missing_haar_cascade_is_exit_2_before_anything_is_written(clip_folder, tmp_path, monkeypatch, tiny_flags):
    monkeypatch.setattr(cv2.data, "haarcascades", str(tmp_path / "no-cascades") + "/")
    load_cascade.cache_clear()
    try:
        result = runner.invoke(app, [str(clip_folder / "validation"), "--cache", str(tmp_path / "cache"), *tiny_flags])
    finally:
        load_cascade.cache_clear()
    assert result.exit_code == ExitCode.USAGE and "cannot load Haar cascade" in result.stderr
    assert _nothing_written(tmp_path / "cache")


@pytest.mark.parametrize("spec", ["absent", "typo=absent/train"])
def test_a_missing_input_path_is_exit_2_naming_it(spec, tmp_path, tiny_flags):
    result = runner.invoke(app, [str(tmp_path / spec), "--cache", str(tmp_path / "cache"), *tiny_flags])
    assert result.exit_code == ExitCode.USAGE and "no such file or folder" in result.stderr and spec in result.stderr
    assert _nothing_written(tmp_path / "cache")


def test_a_parent_folder_of_splits_is_refused_unless_one_split(clip_folder, tmp_path, tiny_flags):
    cache_dir = tmp_path / "cache"
    refused = runner.invoke(app, [str(clip_folder), "--cache", str(cache_dir), *tiny_flags])
    assert refused.exit_code == ExitCode.USAGE, refused.output
    assert f"pass train={clip_folder / 'train'} validation={clip_folder / 'validation'};" in refused.stderr
    assert refused.stderr.strip().endswith("pass --one-split") and _nothing_written(cache_dir)
    meant = runner.invoke(app, [str(clip_folder), "--one-split", "--cache", str(cache_dir), *tiny_flags])
    assert meant.exit_code == 0, meant.output
    assert CacheReader(cache_dir).splits() == {clip_folder.name: 4}


def test_label_files_that_label_none_of_the_videos_are_warned_about_and_the_summary_counts_labels(
    clip_folder, tmp_path, tiny_flags
):
    labels, bare = tmp_path / "labels.csv", tmp_path / "bare.csv"
    labels.write_text("video_id,openness\nvalidation0.mp4,0.5\n")
    bare.write_text("video_id,openness\nvalidation0,0.5\n")
    arguments = [str(clip_folder / "validation"), "--cache", str(tmp_path / "cache"), *tiny_flags]
    result = runner.invoke(app, [*arguments, "--labels", str(bare)])
    assert result.exit_code == 0, result.output
    assert (
        f"warning: {bare}: labels none of the 1 cached video (it has 1 labelled id); 1 labelled id lacks the file "
        "extension the cached ids carry ('validation0' is cached as 'validation0.mp4'): add it to the ids"
    ) in result.stderr
    assert result.stdout.strip().endswith("(1 video in the cache, 0 labelled)")
    labelled = runner.invoke(app, [*arguments, "--labels", str(labels)])
    assert labelled.exit_code == 0 and "warning" not in labelled.stderr
    assert labelled.stdout.strip().endswith("1 already cached, 0 failed (1 video in the cache, 1 labelled)")


def test_the_default_cache_folder_is_features_not_the_cache_package():
    assert DEFAULT_CACHE == "features"
    help_text = " ".join(runner.invoke(app, ["--help"], env={"COLUMNS": "200"}).output.split())
    assert "--cache FOLDER Cache folder (created if missing). [default: features]" in help_text


def test_the_cache_package_folder_is_refused_as_a_cache(clip_folder, tmp_path, tiny_flags):
    package = tmp_path / "cache"
    shutil.copytree(Path(__import__("cache").__file__).parent, package, ignore=shutil.ignore_patterns("__pycache__"))
    before = sorted(path.name for path in package.iterdir())
    result = runner.invoke(app, [str(clip_folder / "validation"), "--cache", str(package), *tiny_flags])
    assert result.exit_code == ExitCode.USAGE and "holds Python source" in result.stderr
    assert sorted(path.name for path in package.iterdir()) == before


def test_window_audio_and_no_crops_end_to_end(clip_folder, tmp_path, tiny_flags):
    cache_dir = tmp_path / "cache"
    result = runner.invoke(
        app,
        [
            str(clip_folder / "validation"),
            "--cache",
            str(cache_dir),
            *tiny_flags,
            "--audio-mode",
            "window",
            "--no-crops",
        ],
    )
    assert result.exit_code == 0, result.output
    with h5py.File(next(cache_dir.glob("shard-*.h5"))) as shard:
        assert "face_crops" not in shard
    arrays = CacheReader(cache_dir).read("validation", ("audio_features", "face_embeddings"))
    decoded = decode(clip_folder / "validation" / "validation0.mp4", DecodeOptions(frames=4))
    window = audio_features(decoded.audio, 16000, decoded.duration, 4, AudioOptions(audio_mode="window"))
    assert not np.allclose(window, audio_features(decoded.audio, 16000, decoded.duration, 4, AudioOptions()))
    np.testing.assert_array_equal(arrays["audio_features"][0], window)
