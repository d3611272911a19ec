"""Find the videos named on the command line and identify each by its content."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cache.manifest import file_digest

VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv"}


@dataclass(frozen=True)
class VideoJob:
    """One video to extract: where it is, which split, its label key and content hash."""

    path: str
    split: str
    video_id: str
    content_hash: str


@dataclass(frozen=True)
class Failure:
    """A video (or input) that could not be used, with a one-line reason."""

    path: str
    reason: str


def parse_input(spec: str) -> tuple[str | None, Path]:
    """``SPLIT=PATH`` or a bare ``PATH`` (split taken from folder names)."""
    split, separator, path = spec.partition("=")
    if separator and split and "/" not in split:
        return split, Path(path)
    return None, Path(spec)


def _videos_under(folder: Path) -> list[Path]:
    # os.walk does not follow symlinked folders, so a symlink loop cannot trap it.
    found = []
    for root, folders, files in os.walk(folder):
        folders.sort()
        found.extend(Path(root) / name for name in sorted(files) if Path(name).suffix.lower() in VIDEO_SUFFIXES)
    return found


def discover(specs: list[str]) -> tuple[list[tuple[Path, str]], list[Failure]]:
    """Expand inputs into (video path, split) pairs.

    A folder is searched recursively and its videos take the folder's own name as
    split; a file takes its parent folder's name; ``SPLIT=PATH`` overrides both.
    """
    videos: list[tuple[Path, str]] = []
    failures: list[Failure] = []
    for spec in specs:
        split, path = parse_input(spec)
        if path.is_file():
            videos.append((path, split or path.resolve().parent.name))
        elif path.is_dir():
            found = _videos_under(path)
            if not found:
                failures.append(Failure(str(path), f"folder holds no videos (looked for {', '.join(sorted(VIDEO_SUFFIXES))})"))
            videos.extend((video, split or path.resolve().name) for video in found)
        else:
            failures.append(Failure(str(path), "no such file or folder"))
    return videos, failures


def identify(videos: list[tuple[Path, str]], progress=None) -> tuple[list[VideoJob], list[Failure]]:
    """Hash each video's bytes and name it by its file name (the label key).

    Copies of one file (same content) become one job. Two different files with the
    same name would share a label key: the first keeps it, the others fail with a
    reason naming both, so nothing collides silently.
    """
    jobs: dict[str, VideoJob] = {}
    by_name: dict[str, VideoJob] = {}
    failures: list[Failure] = []
    for path, split in videos:
        try:
            digest = file_digest(path)
        except OSError as error:
            failures.append(Failure(str(path), f"cannot read: {error.strerror or error}"))
            continue
        finally:
            if progress is not None:
                progress.update(1)
        if digest in jobs:
            continue
        job = VideoJob(str(path), split, path.name, digest)
        clash = by_name.get(job.video_id)
        if clash is not None:
            failures.append(Failure(str(path), f"video_id {job.video_id} is already taken by {clash.path}, a different file; rename one of them"))
            continue
        jobs[digest] = by_name[job.video_id] = job
    return list(jobs.values()), failures
