"""Drop cached videos explicitly: by id, or every video whose source file is gone (the
ghost a renamed file leaves behind).

Finished shards are never rewritten: a removed video stays in its shard and the index
lists its row among the shard's ``removed`` rows, so every reader (training, ``info``,
``verify``, ``export``, the next extraction) skips it. The index is replaced in one
atomic write, so a removal happens whole or not at all. A removed video comes back
only when an extraction finds its file among the inputs again.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cache.lock import CacheLock
from cache.manifest import Index, plural
from cache.reader import CacheReader
from cache.schema import VideoRecord
from common.errors import CacheError, OptionError

SUGGESTIONS = 3  # near matches named for an unknown id


@dataclass(frozen=True)
class CachedVideo:
    """A current video of a cache: its id, split and the path it was read from."""

    video_id: str
    split: str
    source: str


def cached_videos(reader: CacheReader) -> list[CachedVideo]:
    """Every current video of the cache, in split then id order, with its source path."""
    videos = []
    for split in reader.splits():
        arrays = reader.read(split, ("video_id", "source"))
        videos += [
            CachedVideo(video_id, split, source) for video_id, source in zip(arrays["video_id"], arrays["source"])
        ]
    return videos


def _unknown_id_problem(cache_dir: Path, unknown: list[str], cached: list[str]) -> str:
    parts = []
    for video_id in unknown:
        near = difflib.get_close_matches(video_id, cached, n=SUGGESTIONS)
        parts.append(f"{video_id!r}" + (f" (did you mean {' or '.join(map(repr, near))}?)" if near else ""))
    return (
        f"{cache_dir}: no cached video named {', '.join(parts)}; nothing was removed. "
        f"Ids are file names with their extension: `python -m cache export {cache_dir} --out videos.csv` lists them"
    )


def _drop(cache_dir: Path, index: Index, video_ids: set[str]) -> None:
    """Mark the current rows of ``video_ids`` removed, save the index, and check that
    the saved index reads back with exactly those videos gone."""
    before = {entry.video_ids[row] for entry, row in index.live()}
    for entry, row in list(index.live()):
        if entry.video_ids[row] in video_ids:
            entry.removed = sorted({*entry.removed, row})
    try:
        index.save(cache_dir)
    except OSError as error:
        raise CacheError(f"{cache_dir}: cannot save the index ({error}); nothing was removed") from error
    after = {entry.video_ids[row] for entry, row in Index.load(cache_dir).live()}
    if after != before - video_ids:
        raise CacheError(f"{cache_dir}: the saved index does not read back as written; run `python -m cache verify`")


def remove_videos(cache_dir: Path, video_ids: Iterable[str]) -> int:
    """Remove the named videos from a cache; returns how many videos it still holds.

    Raises
    ------
    CacheError
        When ``cache_dir`` is not a readable cache, another process writes to it, or
        an id is not a cached video (named with its near matches; nothing is removed).
    """
    cache_dir = Path(cache_dir)
    wanted = set(video_ids)
    CacheReader(cache_dir)  # a folder that is not an intact cache is refused before the lock file is made
    with CacheLock(cache_dir):
        index = Index.load(cache_dir)
        cached = sorted(entry.video_ids[row] for entry, row in index.live())
        unknown = sorted(wanted.difference(cached))
        if unknown:
            raise CacheError(_unknown_id_problem(cache_dir, unknown, cached))
        _drop(cache_dir, index, wanted)
        return len(cached) - len(wanted)


def prune_missing(cache_dir: Path, missing: bool) -> list[CachedVideo]:
    """Remove every cached video whose source file no longer exists; returns them.

    Relative source paths are read from the current folder, as the extraction wrote
    them. When no source file exists at all the command is far more likely run from
    another folder (or on another machine) than every video renamed, so it is refused.

    Raises
    ------
    OptionError
        When ``missing`` is not set: it names what is pruned, so nothing is pruned by accident.
    CacheError
        When ``cache_dir`` is not a readable cache, another process writes to it, or
        no cached video's source file exists (nothing is removed).
    """
    if not missing:
        raise OptionError(
            "missing", "not given: prune removes the videos whose source file is gone; pass `missing` to do that"
        )
    cache_dir = Path(cache_dir)
    CacheReader(cache_dir)  # a folder that is not an intact cache is refused before the lock file is made
    with CacheLock(cache_dir):
        reader = CacheReader(cache_dir)
        videos = cached_videos(reader)
        gone = [video for video in videos if not Path(video.source).exists()]
        if gone and len(gone) == len(videos):
            raise CacheError(
                f"{cache_dir}: the source file of none of its {plural(len(videos), 'video')} exists from here "
                f"(e.g. {gone[0].source}); relative paths are read from the current folder: run this from the folder "
                f"the extraction ran in, or remove videos by id with `python -m cache remove {cache_dir} VIDEO_ID...`"
            )
        if gone:
            _drop(cache_dir, reader.index, {video.video_id for video in gone})
        return gone


def ghost_ids(renamed: Iterable[tuple[VideoRecord, str]]) -> set[str]:
    """Ids of cached videos that an extraction found again under another name while
    their own file is gone: ghosts of renamed files.

    Parameters
    ----------
    renamed : iterable of (VideoRecord, str)
        A cached record and the new id its content was found under.
    """
    return {
        record.video_id for record, new_id in renamed if record.video_id != new_id and not Path(record.source).exists()
    }


def ghost_warning(count: int, cache_dir: Path) -> str:
    """What a user does about ``count`` ghosts of renamed files."""
    return (
        f"{plural(count, 'video is', 'videos are')} cached under another name whose file is gone (ghosts): "
        f"remove them with `python -m cache prune {cache_dir} --missing`"
    )
