"""Find the videos named on the command line and identify each by its content."""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from cache.manifest import file_digest
from common.errors import TraitcacheError, command_line_text, via_make
from common.paths import close_siblings, did_you_mean

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


def printable(path: Path) -> str:
    """The path as text that any file or terminal accepts.

    Linux file names are bytes; those that are not UTF-8 reach Python as lone
    surrogates, which strict UTF-8 writers refuse. They are shown as ``\\xNN``.
    """
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def unusable_reason(path: Path) -> str | None:
    """Why ``path`` cannot be read as a video file, or None for a regular file.

    Named pipes, sockets and devices are refused here because reading one would
    block or never end; symbolic links are followed.

    Returns
    -------
    str or None
        A one-line reason, or None when ``path`` is (a link to) a regular file.
    """
    try:
        mode = path.stat().st_mode
    except OSError as error:
        if error.errno == errno.ELOOP:
            return "symbolic link loop"
        if path.is_symlink():
            return "broken symbolic link (its target does not exist)"
        if error.errno == errno.ENOENT:
            return "no such file or folder"
        return f"cannot read: {error.strerror or error}"
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a folder, not a video file"
    if stat.S_ISFIFO(mode):
        return "a named pipe, not a regular file"
    return "a socket or device, not a regular file"


def _videos_under(folder: Path) -> tuple[list[Path], list[Failure]]:
    found: list[Path] = []
    failures: list[Failure] = []

    def unlisted(error: OSError) -> None:
        # os.walk skips a folder it cannot list unless told; its videos must not vanish silently.
        failures.append(Failure(printable(Path(error.filename)), f"cannot list folder: {error.strerror or error}"))

    # os.walk does not follow symlinked folders, so a symlink loop cannot trap it.
    for root, folders, files in os.walk(folder, onerror=unlisted):
        folders.sort()
        for name in sorted(files):
            path = Path(root) / name
            if path.suffix.lower() not in VIDEO_SUFFIXES:
                continue
            reason = unusable_reason(path)
            if reason is None:
                found.append(path)
            else:
                failures.append(Failure(printable(path), reason))
    return found, failures


def discover(specs: list[str]) -> tuple[list[tuple[Path, str]], list[Failure]]:
    """Expand inputs into (video path, split) pairs.

    A folder is searched recursively and its videos take the folder's own name as
    split; a file takes its parent folder's name; ``SPLIT=PATH`` overrides both.
    Anything that cannot be read as a file (a missing path, a broken link, a symlink
    loop, a pipe) and any path that is not valid UTF-8 (the cache stores names and
    paths as UTF-8) becomes a Failure.
    """
    videos: list[tuple[Path, str]] = []
    failures: list[Failure] = []
    for spec in specs:
        split, path = parse_input(spec)
        if path.is_dir():
            found, unreadable = _videos_under(path)
            failures += unreadable
            if not found and not unreadable:
                failures.append(
                    Failure(printable(path), f"folder holds no videos (looked for {', '.join(sorted(VIDEO_SUFFIXES))})")
                )
            videos.extend((video, split or path.resolve().name) for video in found)
        elif (reason := unusable_reason(path)) is not None:
            failures.append(Failure(printable(path), reason))
        else:
            videos.append((path, split or path.resolve().parent.name))
    usable = []
    for path, split in videos:
        if _is_utf8(str(path)) and _is_utf8(split):
            usable.append((path, split))
        else:
            failures.append(
                Failure(
                    printable(path), "path is not valid UTF-8, which the cache needs for names and paths; rename it"
                )
            )
    return usable, failures


def make_job(path: Path, split: str) -> VideoJob | Failure:
    """A job for one video, named by its file name and identified by its bytes' hash."""
    try:
        return VideoJob(str(path), split, path.name, file_digest(path))
    except OSError as error:
        return Failure(printable(path), f"cannot read: {error.strerror or error}")


def identify(videos: list[tuple[Path, str]], progress=None) -> tuple[list[VideoJob], list[Failure]]:
    """Hash each video's bytes and name it by its file name (the label key).

    Every distinct file name gets its own job, byte-identical copies included (the
    extraction decodes each content once and records it under every name). The
    same file listed twice is one job. A file name is a label key, so it can be
    only one video in one split: a second file with a taken name fails with a
    reason naming both, so nothing collides silently.
    """
    jobs: dict[str, VideoJob] = {}
    failures: list[Failure] = []
    for path, split in videos:
        job = make_job(path, split)
        if progress is not None:
            progress.update(1)
        if isinstance(job, Failure):
            failures.append(job)
            continue
        taken = jobs.get(job.video_id)
        if taken is None:
            jobs[job.video_id] = job
        elif (taken.content_hash, taken.split) != (job.content_hash, job.split):
            what = (
                "a different file"
                if taken.content_hash != job.content_hash
                else f"an identical file in split {taken.split!r}"
            )
            failures.append(
                Failure(
                    str(path), f"video_id {job.video_id} is already taken by {taken.path}, {what}; rename one of them"
                )
            )
    return list(jobs.values()), failures


class InputError(TraitcacheError):
    """An input named on the command line cannot be used at all."""

    def command_line_message(self) -> str:
        return command_line_text(str(self))


SPLIT_NAMES = ("train", "training", "validation", "val", "valid", "test")  # folder names that look like data-set splits


def split_folders_problem(spec: str) -> str | None:
    """Why a folder input looks like the parent of split folders, or None.

    ``data/`` holding ``train/`` and ``test/`` would put every video into one split
    ``data``: hours of extraction for a useless hold-out. The user almost certainly
    meant ``train=data/train test=data/test``, which the problem spells out.
    """
    split, path = parse_input(spec)
    if not path.is_dir():
        return None
    named = sorted(child.name for child in path.iterdir() if child.is_dir() and child.name.lower() in SPLIT_NAMES)
    if not named:
        return None
    chosen = split or path.resolve().name
    splits = " ".join(f"{name}={path / name}" for name in named)
    through_make = f' (through make: DATA="{splits}")' if via_make() else ""
    return (
        f"{spec}: holds folders named {', '.join(named)}, so all its videos would go to one split {chosen!r}; "
        f"to use them as splits, pass {splits}{through_make}; to put them in one split on purpose, pass `one_split`"
    )


def check_inputs(specs: list[str], one_split: bool = False) -> None:
    """Refuse, before any work, an input path that does not exist, a folder that
    holds no videos, or (unless ``one_split``) a folder whose subfolders are named
    like splits: all are mistakes in the command, not bad videos.

    Raises
    ------
    InputError
        Naming the first such input and what was expected.
    """
    for spec in specs:
        _, path = parse_input(spec)
        if not path.exists() and not path.is_symlink():
            near = did_you_mean(close_siblings(path))
            raise InputError(
                f"{spec}: no such file or folder; "
                + (near or "expected a video file or a folder of videos (SPLIT=PATH names the split)")
            )
        if path.is_dir() and not any(
            Path(root, name).suffix.lower() in VIDEO_SUFFIXES for root, _, names in os.walk(path) for name in names
        ):
            raise InputError(f"{spec}: folder holds no videos (looked for {', '.join(sorted(VIDEO_SUFFIXES))})")
        problem = None if one_split else split_folders_problem(spec)
        if problem:
            raise InputError(problem)
