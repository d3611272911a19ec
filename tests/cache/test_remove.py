"""cache.remove: dropping videos by id or by a vanished source file, and the ghosts of renamed files."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cache.cli import app as cache_app
from cache.manifest import Index, file_digest
from cache.reader import CacheReader
from cache.remove import ghost_ids, prune_missing, remove_videos
from cache.report import describe
from cache.schema import INDEX_FILE
from cache.synthetic import SMALL_CONFIG, random_record, write_random_cache
from cache.verify import verify
from cache.writer import CacheWriter
from common.errors import CacheError, OptionError

VIDEOS = 6


def _ids(cache_dir: Path) -> list[str]:
    reader = CacheReader(cache_dir)
    return sorted(video_id for split in reader.splits() for video_id in reader.read(split, ("video_id",))["video_id"])


def _shard_digests(cache_dir: Path) -> dict[str, str]:
    return {path.name: file_digest(path) for path in sorted(cache_dir.glob("shard-*.h5"))}


def _cache_of_real_files(cache_dir: Path, folder: Path, numbers) -> dict[int, Path]:
    """A cache whose videos' sources are files that exist (under ``folder``)."""
    folder.mkdir(parents=True, exist_ok=True)
    sources = {}
    with CacheWriter(cache_dir, SMALL_CONFIG, videos_per_shard=2) as writer:
        for number in numbers:
            record = random_record(number)
            sources[number] = folder / record.video_id
            sources[number].write_bytes(b"video bytes")
            writer.add(dataclasses.replace(record, source=str(sources[number])))
    return sources


def test_removed_videos_are_gone_for_every_reader_and_the_shards_are_untouched(tmp_path):
    cache_dir = write_random_cache(tmp_path / "cache", range(VIDEOS), videos_per_shard=4)
    shards = _shard_digests(cache_dir)
    gone = [random_record(1).video_id, random_record(4).video_id]
    assert remove_videos(cache_dir, gone) == VIDEOS - 2
    assert _ids(cache_dir) == sorted({random_record(number).video_id for number in range(VIDEOS)} - set(gone))
    assert describe(cache_dir)["videos"] == VIDEOS - 2 and CacheReader(cache_dir).splits() == {"train": VIDEOS - 2}
    assert verify(cache_dir) == []
    assert _shard_digests(cache_dir) == shards


def test_a_removal_survives_later_shards_and_a_video_returns_only_when_written_again(tmp_path):
    cache_dir = write_random_cache(tmp_path / "cache", range(VIDEOS), videos_per_shard=4)
    remove_videos(cache_dir, [random_record(2).video_id])
    with CacheWriter(cache_dir, SMALL_CONFIG) as writer:
        writer.add(random_record(VIDEOS))
    assert random_record(2).video_id not in _ids(cache_dir) and random_record(VIDEOS).video_id in _ids(cache_dir)
    with CacheWriter(cache_dir, SMALL_CONFIG) as writer:
        writer.add(random_record(2))
    assert random_record(2).video_id in _ids(cache_dir) and len(_ids(cache_dir)) == VIDEOS + 1


def test_removing_a_re_extracted_video_does_not_bring_its_older_record_back(tmp_path):
    cache_dir = write_random_cache(tmp_path / "cache", [0, 1])
    write_random_cache(cache_dir, [0], version=1)  # changed content: the new record supersedes the old
    remove_videos(cache_dir, [random_record(0).video_id])
    assert _ids(cache_dir) == [random_record(1).video_id]
    assert Index.load(cache_dir).content_hashes().keys() == {random_record(1).content_hash}


def test_an_unknown_id_changes_nothing_and_near_matches_are_suggested(tmp_path):
    cache_dir = write_random_cache(tmp_path / "cache", range(VIDEOS))
    index = (cache_dir / INDEX_FILE).read_bytes()
    bare = random_record(3).video_id.removesuffix(".mp4")
    with pytest.raises(CacheError) as refused:
        remove_videos(cache_dir, [random_record(0).video_id, bare])
    message = str(refused.value)
    assert f"no cached video named {bare!r} (did you mean {random_record(3).video_id!r}" in message
    assert "nothing was removed" in message and random_record(0).video_id not in message
    assert (cache_dir / INDEX_FILE).read_bytes() == index


def test_remove_and_prune_refuse_while_a_run_writes_the_cache(tmp_path, children):
    cache_dir = write_random_cache(tmp_path / "cache", range(2))
    holder = children.hold_lock(cache_dir)
    with pytest.raises(CacheError, match=f"another process \\(pid {holder.pid}\\) is writing"):
        remove_videos(cache_dir, [random_record(0).video_id])
    with pytest.raises(CacheError, match="another process"):
        prune_missing(cache_dir, missing=True)
    assert len(_ids(cache_dir)) == 2


def test_prune_drops_exactly_the_videos_whose_source_is_gone(tmp_path):
    cache_dir = tmp_path / "cache"
    sources = _cache_of_real_files(cache_dir, tmp_path / "videos", range(4))
    assert prune_missing(cache_dir, missing=True) == []
    nothing = CliRunner().invoke(cache_app, ["prune", str(cache_dir), "--missing"])
    assert nothing.exit_code == 0 and "nothing to prune: the source file of every cached video exists" in nothing.stdout
    sources[1].unlink()
    sources[2].rename(sources[2].with_name("renamed.mp4"))
    pruned = prune_missing(cache_dir, missing=True)
    assert [(video.video_id, video.source) for video in pruned] == [
        (random_record(number).video_id, str(sources[number])) for number in (1, 2)
    ]
    assert _ids(cache_dir) == [random_record(0).video_id, random_record(3).video_id]
    assert verify(cache_dir) == []


def test_prune_refuses_when_no_source_exists_and_needs_missing(tmp_path):
    cache_dir = tmp_path / "cache"
    _cache_of_real_files(cache_dir, tmp_path / "videos", range(3))
    index = (cache_dir / INDEX_FILE).read_bytes()
    with pytest.raises(OptionError) as unsaid:
        prune_missing(cache_dir, missing=False)
    assert unsaid.value.command_line_message().startswith("--missing not given") and "pass --missing" in str(
        unsaid.value.command_line_message()
    )
    shutil.rmtree(tmp_path / "videos")  # as seen from another folder or machine
    with pytest.raises(CacheError, match="the source file of none of its 3 videos exists from here"):
        prune_missing(cache_dir, missing=True)
    assert (cache_dir / INDEX_FILE).read_bytes() == index


def test_ghosts_are_records_found_under_a_new_name_whose_file_is_gone(tmp_path):
    kept = tmp_path / "kept.mp4"
    kept.write_bytes(b"video bytes")
    renamed = dataclasses.replace(random_record(0), source=str(tmp_path / "gone.mp4"))
    copied = dataclasses.replace(random_record(1), source=str(kept))
    moved = dataclasses.replace(random_record(2), source=str(tmp_path / "gone-too.mp4"))
    pairs = [(renamed, "new.mp4"), (renamed, "other.mp4"), (copied, "copy.mp4"), (moved, moved.video_id)]
    assert ghost_ids(pairs) == {renamed.video_id}


def test_a_renamed_clip_leaves_a_ghost_that_the_run_reports_and_prune_removes(clip_folder, tiny_flags, tmp_path):
    from extract.cli import app as extract_app
    from train.dataset import load_cache

    data, cache_dir = tmp_path / "train", tmp_path / "cache"
    data.mkdir()
    for name in ("train0.mp4", "train1.mp4"):
        shutil.copyfile(clip_folder / "train" / name, data / name)
    labels = tmp_path / "labels.csv"
    labels.write_text(
        "video_id,openness,conscientiousness,extraversion,agreeableness,neuroticism\n"
        + "".join(f"{name},0.5,0.5,0.5,0.5,0.5\n" for name in ("train0.mp4", "train1.mp4", "b.mp4"))
    )
    command = [str(data), "--cache", str(cache_dir), "--labels", str(labels), *tiny_flags]
    first = CliRunner().invoke(extract_app, command)
    assert first.exit_code == 0, first.output
    (data / "train0.mp4").rename(data / "b.mp4")
    again = CliRunner().invoke(extract_app, command)
    assert again.exit_code == 0, again.output
    assert (
        f"warning: 1 video is cached under another name whose file is gone (ghosts): "
        f"remove them with `python -m cache prune {cache_dir} --missing`" in again.stderr
    )
    assert (
        "0 extracted, 0 identical copies, 1 reused, 1 already cached, 0 failed (3 videos in the cache, 3 labelled)"
        in again.stdout
    )
    pruned = CliRunner().invoke(cache_app, ["prune", str(cache_dir), "--missing"])
    assert pruned.exit_code == 0, pruned.output
    assert f"removed train0.mp4 (train): {data / 'train0.mp4'} is gone" in pruned.stdout
    assert _ids(cache_dir) == ["b.mp4", "train1.mp4"]
    assert CliRunner().invoke(cache_app, ["verify", str(cache_dir)]).exit_code == 0
    assert len(load_cache(CacheReader(cache_dir)).splits["train"]) == 2
    third = CliRunner().invoke(extract_app, command)
    assert third.exit_code == 0 and "ghost" not in third.stderr and _ids(cache_dir) == ["b.mp4", "train1.mp4"]
