"""extract/inputs.py: finding videos, naming splits, identifying files by content."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from common.errors import MAKE_ENVIRONMENT
from extract.inputs import (
    InputError,
    check_inputs,
    discover,
    identify,
    parse_input,
    unusable_reason,
)


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
    assert [(path.name, split) for path, split in videos] == [
        ("a.mp4", "train"),
        ("b.MP4", "train"),
        ("c.mp4", "validation"),
    ]


def test_a_single_file_takes_its_folder_name(tmp_path):
    path = _touch(tmp_path / "test" / "clip.mp4")
    videos, _ = discover([str(path)])
    assert videos == [(path, "test")]


def test_missing_inputs_and_empty_folders_are_reported(tmp_path):
    (tmp_path / "empty").mkdir()
    videos, failures = discover([str(tmp_path / "absent"), str(tmp_path / "empty")])
    assert videos == []
    assert [failure.reason.split(" (")[0] for failure in failures] == [
        "no such file or folder",
        "folder holds no videos",
    ]


def test_a_folder_named_like_a_video_and_a_symlink_loop_are_not_followed(tmp_path):
    _touch(tmp_path / "data" / "real.mp4")
    (tmp_path / "data" / "fake.mp4").mkdir()
    (tmp_path / "data" / "loop").symlink_to(tmp_path / "data")
    videos, failures = discover([str(tmp_path / "data")])
    assert [path.name for path, _ in videos] == ["real.mp4"] and failures == []


def test_copies_under_other_names_are_kept_and_name_clashes_are_refused(tmp_path):
    original = _touch(tmp_path / "a" / "clip.mp4", b"first")
    copy = tmp_path / "b" / "clip-copy.mp4"
    copy.parent.mkdir()
    shutil.copyfile(original, copy)
    clash = _touch(tmp_path / "c" / "clip.mp4", b"different bytes")
    jobs, failures = identify([(original, "train"), (copy, "train"), (original, "train"), (clash, "train")])
    assert [job.path for job in jobs] == [str(original), str(copy)]
    assert jobs[0].content_hash == jobs[1].content_hash and len(jobs[0].content_hash) == 64
    assert len(failures) == 1 and failures[0].path == str(clash) and str(original) in failures[0].reason


def test_one_name_in_two_splits_is_refused_even_with_identical_bytes(tmp_path):
    first = _touch(tmp_path / "train" / "clip.mp4", b"same")
    second = tmp_path / "test" / "clip.mp4"
    second.parent.mkdir()
    shutil.copyfile(first, second)
    jobs, failures = identify([(first, "train"), (second, "test")])
    assert [job.split for job in jobs] == ["train"]
    assert failures[0].path == str(second) and "identical file in split 'train'" in failures[0].reason


def test_a_missing_input_or_an_empty_folder_is_refused_before_any_work(tmp_path):
    (tmp_path / "empty").mkdir()
    _touch(tmp_path / "data" / "clip.mp4")
    check_inputs([str(tmp_path / "data"), f"train={tmp_path / 'data' / 'clip.mp4'}"])
    with pytest.raises(InputError, match=r"absent: no such file or folder; expected a video file or a folder"):
        check_inputs([str(tmp_path / "data"), str(tmp_path / "absent")])
    with pytest.raises(InputError, match=r"empty: folder holds no videos \(looked for"):
        check_inputs([f"test={tmp_path / 'empty'}"])
    with pytest.raises(InputError) as caught:
        check_inputs([f"train={tmp_path / 'dta'}"])
    assert str(caught.value) == f"train={tmp_path / 'dta'}: no such file or folder; did you mean {tmp_path / 'data'}?"


def test_a_parent_of_split_folders_is_refused_with_the_split_form_unless_one_split(tmp_path, monkeypatch):
    monkeypatch.delenv(MAKE_ENVIRONMENT, raising=False)
    for split in ("train", "test", "notes"):
        _touch(tmp_path / "data" / split / "clip.mp4")
    data, train, test = tmp_path / "data", tmp_path / "data" / "train", tmp_path / "data" / "test"
    check_inputs([f"train={train}", f"test={test}"])
    with pytest.raises(InputError) as refused:
        check_inputs([str(data), f"train={train}"])
    message = refused.value.command_line_message()
    assert message.startswith(
        f"{data}: holds folders named test, train, so all its videos would go to one split 'data'"
    )
    assert f"pass test={test} train={train};" in message and message.endswith("pass --one-split")
    assert "through make" not in message
    check_inputs([str(data)], one_split=True)
    monkeypatch.setenv(MAKE_ENVIRONMENT, "EXTRACT_FLAGS")
    with pytest.raises(InputError) as through_make:
        check_inputs([str(data)])
    assert f'(through make: DATA="test={test} train={train}")' in through_make.value.command_line_message()
    assert through_make.value.command_line_message().endswith(
        "pass --one-split (through make: EXTRACT_FLAGS=--one-split)"
    )


def test_unusable_reason_says_what_the_path_is(tmp_path):
    video = _touch(tmp_path / "real.mp4")
    (tmp_path / "loop.mp4").symlink_to("loop.mp4")
    (tmp_path / "dangling.mp4").symlink_to(tmp_path / "gone.mp4")
    (tmp_path / "link.mp4").symlink_to(video)
    assert unusable_reason(video) is None and unusable_reason(tmp_path / "link.mp4") is None
    assert unusable_reason(tmp_path) == "a folder, not a video file"
    assert unusable_reason(tmp_path / "absent.mp4") == "no such file or folder"
    assert unusable_reason(tmp_path / "loop.mp4") == "symbolic link loop"
    assert unusable_reason(tmp_path / "dangling.mp4").startswith("broken symbolic link")


def test_links_loops_and_bad_names_inside_a_folder_become_failures_with_printable_paths(tmp_path):
    data = tmp_path / "train"
    _touch(data / "good.mp4")
    (data / "loop.mp4").symlink_to("loop.mp4")
    _touch(data / os.fsdecode(b"bad\xffname.mp4"))
    videos, failures = discover([str(data)])
    assert [path.name for path, _ in videos] == ["good.mp4"]
    reasons = {Path(failure.path).name: failure.reason for failure in failures}
    assert reasons["loop.mp4"] == "symbolic link loop"
    assert reasons["bad\\xffname.mp4"].startswith("path is not valid UTF-8")
    for failure in failures:
        failure.path.encode("utf-8")  # failures.csv and the terminal take strict UTF-8


def test_a_split_name_that_is_not_utf8_is_refused(tmp_path):
    folder = tmp_path / os.fsdecode(b"split\xff")
    _touch(folder / "clip.mp4")
    videos, failures = discover([str(folder)])
    assert videos == [] and failures[0].reason.startswith("path is not valid UTF-8")


LIST_AND_PRINT = """
import json, sys
from extract.inputs import discover
videos, failures = discover(sys.argv[1:])
print(json.dumps([[path.name for path, _ in videos], [failure.reason for failure in failures]]))
"""


def test_a_folder_that_cannot_be_listed_is_reported(tmp_path, run_obeying_file_modes):
    _touch(tmp_path / "data" / "a.mp4")
    locked = tmp_path / "data" / "locked"
    _touch(locked / "b.mp4")
    locked.chmod(0)
    try:
        names, reasons = json.loads(run_obeying_file_modes(LIST_AND_PRINT, str(tmp_path / "data")))
    finally:
        locked.chmod(0o755)
    assert names == ["a.mp4"]
    assert reasons == ["cannot list folder: Permission denied"]
