"""extract/adding.py and `python -m extract add`: feature sets from the stored crops and sound, no video opened."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cache.errors import CacheError, ExitCode
from cache.lock import CacheLock
from cache.reader import CacheReader
from cache.sets import SETS_FOLDER, stored_sets
from cache.writer import shard_files
from extract.adding import AddOptions, add_sets
from extract.backbones import embed_images
from extract.cli import add_app, app
from extract.config import ExtractOptions
from extract.run import extract_to_cache
from extract.smile import smile_features

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
