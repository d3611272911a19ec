"""extract/adding.py and `python -m extract add`: feature sets from the stored crops and sound, no video opened."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from cache.cli import app as cache_app
from cache.lock import CacheLock
from cache.reader import CacheReader
from cache.remove import remove_videos
from cache.report import describe
from cache.sets import SETS_FOLDER, stored_sets
from cache.verify import verify
from cache.writer import shard_files
from common.errors import CacheError, ExitCode
from extract.adding import AddOptions, add_sets
from extract.backbones import build_backbone, embed_images
from extract.cli import add_app, app
from extract.config import ExtractOptions
from extract.run import extract_to_cache
from extract.smile import smile_features
from extract.video import DecodeOptions, decode

FIXTURE = Path(__file__).parents[1] / "fixtures" / "cache-before-sets"  # written by the code before feature sets
runner = CliRunner()


@pytest.fixture
def old_cache(tmp_path) -> Path:
    return Path(shutil.copytree(FIXTURE, tmp_path / "old"))


@pytest.fixture(scope="module")
def new_cache(tmp_path_factory, clip_folder) -> Path:
    """A cache of the train clips built by today's code (sound kept, one video per shard), the videos moved away."""
    root = tmp_path_factory.mktemp("new")
    videos = shutil.copytree(clip_folder / "train", root / "train")
    options = ExtractOptions.from_dict(
        {"frames": 4, "crop_size": 32, "weights": "none", "jobs": 1, "videos_per_shard": 2}
    )
    extract_to_cache([f"train={videos}"], root / "cache", [], options, show_progress=False)
    videos.rename(root / "moved-away")
    return root / "cache"


def _crops_and_sound(cache: Path) -> dict:
    return CacheReader(cache).read("train", ("video_id", "face_crops", "sound_track", "duration", "has_audio"))


def test_a_cache_from_before_feature_sets_reads_and_gains_a_visual_set(old_cache):
    reader = CacheReader(old_cache)
    before = reader.read("train", ("video_id", "face:resnet50", "audio:pyaa"))
    assert before["face:resnet50"].shape == (2, 4, 2048) and before["audio:pyaa"].shape == (2, 4, 68)
    with pytest.raises(CacheError, match="holds no feature set 'face:vgg16'"):
        reader.read("train", ("face:vgg16",))
    summary = add_sets(old_cache, AddOptions(features="face:vgg16", weights="none"), show_progress=False)
    assert summary.added == {"face:vgg16": 2}
    values = CacheReader(old_cache).read("train", ("video_id", "face:vgg16", "face_crops"))
    crops = values["face_crops"]
    expected = embed_images(crops.reshape(-1, *crops.shape[2:]), "vgg16", "none").reshape(2, 4, 512)
    np.testing.assert_array_equal(values["face:vgg16"], expected.astype(np.float16))
    assert list(values["video_id"]) == list(before["video_id"])


def test_an_audio_set_on_a_cache_without_sound_is_refused_naming_the_flag(old_cache):
    result = runner.invoke(add_app, [str(old_cache), "--features", "audio:egemaps", "--quiet"])
    assert result.exit_code == ExitCode.USAGE
    assert "--keep-audio" in result.output and len(result.output.strip().splitlines()) == 1
    assert not (old_cache / SETS_FOLDER).exists()


def test_sets_added_without_the_videos_equal_the_extractors_on_the_stored_sources(new_cache):
    result = runner.invoke(add_app, [str(new_cache), "--features", "face:vgg16,audio:egemaps", "--weights", "none"])
    assert result.exit_code == 0, result.output
    assert "face:vgg16: 3 videos added; audio:egemaps: 3 videos added" in result.output
    values = CacheReader(new_cache).read("train", ("video_id", "face:vgg16", "audio:egemaps"))
    stored = _crops_and_sound(new_cache)
    crops = stored["face_crops"]
    visual = embed_images(crops.reshape(-1, *crops.shape[2:]), "vgg16", "none").reshape(3, 4, 512)
    np.testing.assert_array_equal(values["face:vgg16"], visual.astype(np.float16))
    assert all(len(sound) > 0 for sound in stored["sound_track"])
    for row, (sound, duration) in enumerate(zip(stored["sound_track"], stored["duration"])):
        expected = smile_features(sound, 16000, float(duration), 4, "egemaps")
        np.testing.assert_array_equal(values["audio:egemaps"][row], expected)
    names = {found.name: found for found in stored_sets(new_cache)}
    assert names["audio:egemaps"].dimension == 88 and names["face:vgg16"].dimension == 512


def test_a_rerun_keeps_finished_parts_and_writes_only_the_missing_one(new_cache):
    add_sets(new_cache, AddOptions(features="face:vgg16", weights="none"), show_progress=False)
    (found,) = [found for found in stored_sets(new_cache) if found.name == "face:vgg16"]
    parts = sorted(found.folder.glob("part-*.h5"))
    assert len(parts) == len(shard_files(new_cache)) == 2
    kept, lost = parts
    before = (kept.stat().st_mtime_ns, kept.read_bytes())
    lost.unlink()  # as if the run had been killed before this part was renamed into place
    lost.with_name(lost.name + ".tmp").write_bytes(b"half")
    summary = add_sets(new_cache, AddOptions(features="face:vgg16", weights="none"), show_progress=False)
    assert summary.added == {"face:vgg16": 1}
    assert (kept.stat().st_mtime_ns, kept.read_bytes()) == before
    assert lost.is_file() and not lost.with_name(lost.name + ".tmp").exists()
    assert CacheReader(new_cache).read("train", ("face:vgg16",))["face:vgg16"].shape == (3, 4, 512)


def test_a_missing_part_file_never_reads_as_fill_values(new_cache, tmp_path):
    cache = Path(shutil.copytree(new_cache, tmp_path / "copy"))
    add_sets(cache, AddOptions(features="face:vgg16", weights="none"), show_progress=False)
    (found,) = [found for found in stored_sets(cache) if found.name == "face:vgg16"]
    next(found.folder.glob("part-*.h5")).unlink()
    with pytest.raises(CacheError, match="has no part file"):
        CacheReader(cache).read("train", ("face:vgg16",))


def test_add_is_refused_while_an_extraction_holds_the_cache(new_cache):
    with CacheLock(new_cache), pytest.raises(CacheError):
        add_sets(new_cache, AddOptions(features="face:vgg16", weights="none"), show_progress=False)


def test_default_sets_are_already_there(new_cache):
    result = runner.invoke(add_app, [str(new_cache), "--features", "face:resnet50,audio:pyaa", "--quiet"])
    assert result.exit_code == 0
    assert "face:resnet50: already there; audio:pyaa: already there" in result.output


def test_python_m_extract_dispatches_add_and_still_extracts_inputs(tmp_path):
    environment = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    unknown = subprocess.run(
        [sys.executable, "-m", "extract", "add", str(tmp_path), "--features", "face:vgg61"],
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
    )
    assert unknown.returncode == ExitCode.USAGE
    assert "names no face extractor 'vgg61'" in unknown.stderr and len(unknown.stderr.splitlines()) == 1
    assert runner.invoke(app, [str(tmp_path / "missing"), "--cache", str(tmp_path / "c")]).exit_code == ExitCode.USAGE


def test_info_lists_each_set_and_verify_names_a_damaged_or_missing_part(old_cache):
    add_sets(old_cache, AddOptions(features="face:vgg16", weights="none"), show_progress=False)
    listed = {found["name"]: found for found in describe(old_cache)["feature_sets"]}
    assert describe(old_cache)["feature_sets"] == CacheReader(old_cache).feature_sets()
    assert listed["face:vgg16"]["videos"] == 2 and listed["face:vgg16"]["dimension"] == 512
    assert listed["face:vgg16"]["bytes"] > 0 and listed["face:resnet50"]["bytes"] is None
    info = runner.invoke(cache_app, ["info", str(old_cache)])
    assert "face:vgg16" in info.output and "2/2 videos" in info.output
    assert verify(old_cache) == []
    (found,) = stored_sets(old_cache)
    part = found.part("shard-00000.h5")
    with h5py.File(part, "r") as handle:
        chunk = handle["values"].id.get_chunk_info(0)  # the first video's values, Fletcher-32 checked
    damaged = bytearray(part.read_bytes())
    damaged[chunk.byte_offset + 10] ^= 0xFF
    part.write_bytes(bytes(damaged))
    (problem,) = verify(old_cache)
    assert problem.path == part and problem.reason.startswith("damaged")
    part.unlink()
    (problem,) = verify(old_cache)
    assert "has no part file" in problem.reason


def test_extraction_computes_the_sets_asked_for_and_every_set_held_for_new_videos(clip_folder, tmp_path, tiny_flags):
    cache = tmp_path / "cache"
    first = runner.invoke(
        app,
        [
            f"train={clip_folder / 'train' / 'train0.mp4'}",
            "--cache",
            str(cache),
            "--features",
            "face:vgg16",
            *tiny_flags,
        ],
    )
    assert first.exit_code == 0, first.output
    assert CacheReader(cache).read("train", ("face:vgg16",))["face:vgg16"].shape == (1, 4, 512)
    second = runner.invoke(app, [f"train={clip_folder / 'train' / 'train1.mp4'}", "--cache", str(cache), *tiny_flags])
    assert second.exit_code == 0, second.output
    assert CacheReader(cache).read("train", ("face:vgg16",))["face:vgg16"].shape == (2, 4, 512)


def test_extraction_refuses_an_audio_set_without_the_sound_track_before_any_work(clip_folder, tmp_path, tiny_flags):
    cache = tmp_path / "cache"
    result = runner.invoke(
        app,
        [
            str(clip_folder / "validation"),
            "--cache",
            str(cache),
            "--features",
            "audio:egemaps",
            "--no-audio",
            *tiny_flags,
        ],
    )
    assert result.exit_code == ExitCode.USAGE
    assert "--keep-audio" in result.output and not cache.exists()


def test_the_cache_keeps_the_decoded_sound_and_letterboxed_frames_and_adds_a_scene_set(
    clip_folder, tmp_path, tiny_flags
):
    clip = clip_folder / "validation" / "validation0.mp4"
    cache = tmp_path / "cache"
    result = runner.invoke(app, [f"validation={clip}", "--cache", str(cache), "--keep-frames", *tiny_flags])
    assert result.exit_code == 0, result.output
    stored = CacheReader(cache).read("validation", ("sound_track", "whole_frames", "duration"))
    decoded = decode(clip, DecodeOptions(frames=4), None, 1)
    np.testing.assert_array_equal(stored["sound_track"][0], decoded.audio)
    assert stored["duration"][0] == np.float32(decoded.duration)
    frames = stored["whole_frames"][0]  # 320x240 letterboxed into 32x32: 24 rows of picture, 4 black above and below
    assert frames.shape == (4, 32, 32, 3)
    assert not frames[:, :4].any() and not frames[:, 28:].any() and frames[:, 4:28].any()
    add_sets(cache, AddOptions(features="scene:mobilenetv3small", weights="none"), show_progress=False)
    scene = CacheReader(cache).read("validation", ("scene:mobilenetv3small",))["scene:mobilenetv3small"]
    expected = embed_images(frames, "mobilenetv3small", "none")
    np.testing.assert_array_equal(scene[0], expected.astype(np.float16))


def test_removed_videos_stay_removed_for_sets(tmp_path, new_cache):
    cache = Path(shutil.copytree(new_cache, tmp_path / "copy"))
    shutil.rmtree(cache / SETS_FOLDER, ignore_errors=True)
    removed = CacheReader(cache).read("train", ("video_id",))["video_id"][0]
    remove_videos(cache, [removed])
    summary = add_sets(cache, AddOptions(features="face:vgg16", weights="none"), show_progress=False)
    assert summary.added == {"face:vgg16": 2}
    values = CacheReader(cache).read("train", ("video_id", "face:vgg16"))
    assert removed not in list(values["video_id"]) and values["face:vgg16"].shape == (2, 4, 512)


def test_a_weights_file_of_another_architecture_is_one_line_and_writes_nothing(old_cache, tmp_path):
    weights = tmp_path / "mobilenet.weights.h5"
    build_backbone("mobilenetv3small", "none", 32).save_weights(weights)
    result = runner.invoke(add_app, [str(old_cache), "--features", "face:vgg16", "--weights", str(weights), "--quiet"])
    assert result.exit_code == ExitCode.USAGE
    assert "VGG16" in result.output and len(result.output.strip().splitlines()) == 1
    assert not (old_cache / SETS_FOLDER).exists()


def test_the_cache_from_before_feature_sets_resumes_with_a_new_video(old_cache, clip_folder, tiny_flags):
    result = runner.invoke(
        app, [f"train={clip_folder / 'validation' / 'validation0.mp4'}", "--cache", str(old_cache), *tiny_flags]
    )
    assert result.exit_code == 0, result.output
    assert "1 extracted" in result.output and "3 videos in the cache" in result.output
    refused = runner.invoke(add_app, [str(old_cache), "--features", "audio:egemaps", "--quiet"])
    assert refused.exit_code == ExitCode.USAGE and "shard-00000.h5: stores no sound track" in refused.output


KILL_AT_SECOND_PART = """
import os, signal, sys
from pathlib import Path
renamed = []
def hook(event, args):
    # os.replace raises "os.rename" before it renames: the second part dies before it is in place.
    if event == "os.rename" and Path(str(args[1])).name.startswith("part-"):
        renamed.append(args[1])
        if len(renamed) == 2:
            os.kill(os.getpid(), signal.SIGKILL)
sys.addaudithook(hook)
from extract.adding import AddOptions, add_sets
add_sets(Path(sys.argv[1]), AddOptions(features="face:vgg16", weights="none"), show_progress=False)
"""


def test_add_killed_between_parts_keeps_the_finished_one_and_resumes(new_cache, tmp_path):
    cache = Path(shutil.copytree(new_cache, tmp_path / "copy"))
    shutil.rmtree(cache / SETS_FOLDER, ignore_errors=True)
    environment = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    killed = subprocess.run(
        [sys.executable, "-c", KILL_AT_SECOND_PART, str(cache)], env=environment, capture_output=True, timeout=300
    )
    assert killed.returncode == -9, killed.stderr.decode()[-2000:]
    (found,) = stored_sets(cache)
    (finished,) = found.folder.glob("part-*.h5")
    before = (finished.stat().st_mtime_ns, finished.read_bytes())
    assert list(found.folder.glob("*.tmp"))  # the second part, killed before its rename
    summary = add_sets(cache, AddOptions(features="face:vgg16", weights="none"), show_progress=False)
    assert summary.added == {"face:vgg16": 1}
    assert (finished.stat().st_mtime_ns, finished.read_bytes()) == before
    assert not list(found.folder.glob("*.tmp"))
    assert CacheReader(cache).read("train", ("face:vgg16",))["face:vgg16"].shape == (3, 4, 512)


@pytest.mark.parametrize("backend", ["loky", "dask"])
def test_parallel_jobs_on_loky_and_dask_add_the_numbers_one_job_adds(new_cache, tmp_path, backend):
    serial, parallel = (Path(shutil.copytree(new_cache, tmp_path / name)) for name in ("serial", "parallel"))
    for copy in (serial, parallel):  # the module's cache may hold sets other tests added
        shutil.rmtree(copy / SETS_FOLDER, ignore_errors=True)
    add_sets(serial, AddOptions(features="face:vgg16", weights="none", jobs=1), show_progress=False)
    options = AddOptions(features="face:vgg16", weights="none", jobs=2, backend=backend)
    summary = add_sets(parallel, options, show_progress=False)
    assert summary.added == {"face:vgg16": 3}
    names = ("video_id", "face:vgg16")
    expected, found = (CacheReader(cache).read("train", names) for cache in (serial, parallel))
    np.testing.assert_array_equal(found["video_id"], expected["video_id"])
    assert np.abs(expected["face:vgg16"].astype(np.float32)).max() > 0  # random VGG16 outputs are not all zeros
    np.testing.assert_array_equal(found["face:vgg16"], expected["face:vgg16"])
