"""extract/inputs.py: finding videos, naming splits, identifying files by content."""

from __future__ import annotations

import shutil
from pathlib import Path

from extract.inputs import discover, identify, parse_input


def _touch(path: Path, content: bytes = b"video bytes") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def test_parse_input_reads_an_optional_split():
    assert parse_input("train=data/a") == ("train", Path("data/a"))
    assert parse_input("data/a") == (None, Path("data/a"))
    assert parse_input("data/x=y/clip.mp4") == (None, Path("data/x=y/clip.mp4"))


def test_folders_name_the_split_unless_given(tmp_path):
    _touch(tmp_path / "train" / "a.mp4")
    _touch(tmp_path / "train" / "deeper" / "b.MP4")
    _touch(tmp_path / "train" / "notes.txt")
    _touch(tmp_path / "other" / "c.mp4")
    videos, failures = discover([str(tmp_path / "train"), f"validation={tmp_path / 'other'}"])
    assert failures == []
    assert [(path.name, split) for path, split in videos] == [("a.mp4", "train"), ("b.MP4", "train"), ("c.mp4", "validation")]


def test_a_single_file_takes_its_folder_name(tmp_path):
    path = _touch(tmp_path / "test" / "clip.mp4")
    videos, _ = discover([str(path)])
    assert videos == [(path, "test")]


def test_missing_inputs_and_empty_folders_are_reported(tmp_path):
    (tmp_path / "empty").mkdir()
    videos, failures = discover([str(tmp_path / "absent"), str(tmp_path / "empty")])
    assert videos == []
    assert [failure.reason.split(" (")[0] for failure in failures] == ["no such file or folder", "folder holds no videos"]


def test_a_folder_named_like_a_video_and_a_symlink_loop_are_not_followed(tmp_path):
    _touch(tmp_path / "data" / "real.mp4")
    (tmp_path / "data" / "fake.mp4").mkdir()
    (tmp_path / "data" / "loop").symlink_to(tmp_path / "data")
    videos, failures = discover([str(tmp_path / "data")])
    assert [path.name for path, _ in videos] == ["real.mp4"] and failures == []


def test_copies_become_one_job_and_name_clashes_are_refused(tmp_path):
    original = _touch(tmp_path / "a" / "clip.mp4", b"first")
    copy = tmp_path / "b" / "clip-copy.mp4"
    copy.parent.mkdir()
    shutil.copyfile(original, copy)
    clash = _touch(tmp_path / "c" / "clip.mp4", b"different bytes")
    jobs, failures = identify([(original, "train"), (copy, "train"), (clash, "train")])
    assert [job.path for job in jobs] == [str(original)]
    assert len(jobs[0].content_hash) == 64
    assert len(failures) == 1 and failures[0].path == str(clash) and str(original) in failures[0].reason
