"""common/files.py: a file appears whole or not at all."""

from __future__ import annotations

import errno

import pytest

from common import files
from common.files import TEMPORARY_SUFFIX, replace_atomically, write_atomically


def test_write_atomically_replaces_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "notes.json"
    write_atomically(path, "first")
    write_atomically(path, "second \u00e9")
    assert path.read_text(encoding="utf-8") == "second \u00e9"
    assert sorted(tmp_path.iterdir()) == [path]


def test_write_atomically_writes_under_a_temporary_name(tmp_path, monkeypatch):
    renamed = []
    real_replace = files.os.replace

    def recording_replace(source, target):
        renamed.append((source, target))
        real_replace(source, target)

    monkeypatch.setattr(files.os, "replace", recording_replace)
    write_atomically(tmp_path / "index.json", "{}")
    [(source, target)] = renamed
    assert str(source).endswith(TEMPORARY_SUFFIX) and target == tmp_path / "index.json"


def test_write_atomically_failure_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "index.json"
    write_atomically(path, "old")

    def full_disk(descriptor):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files.os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space"):
        write_atomically(path, "new")
    assert path.read_text() == "old"
    assert sorted(tmp_path.iterdir()) == [path]


def test_a_failing_block_keeps_the_old_file_and_removes_its_part(tmp_path):
    path = tmp_path / "sheet.png"
    path.write_bytes(b"old")
    with pytest.raises(ValueError, match="cannot draw"), replace_atomically(path) as temporary:
        temporary.write_bytes(b"half")
        raise ValueError("cannot draw")
    assert path.read_bytes() == b"old"
    assert sorted(tmp_path.iterdir()) == [path]


def test_a_named_temporary_is_the_one_written_and_renamed(tmp_path):
    path = tmp_path / "shard-00003.h5"
    named = tmp_path / f"shard-00003.h5{TEMPORARY_SUFFIX}"
    with replace_atomically(path, named) as temporary:
        assert temporary == named
        temporary.write_bytes(b"rows")
        assert sorted(tmp_path.iterdir()) == [named]
    assert path.read_bytes() == b"rows" and sorted(tmp_path.iterdir()) == [path]
