"""Group files: which group each video belongs to, for the per-group audit.

Two layouts are read. ChaLearn First Impressions V2's ``eth_gender_annotations_*.csv``
as shipped (semicolon-separated ``VideoName;YouTubeID;Ethnicity;Gender``, numeric
codes), whose groups are named by their meaning; or any CSV (comma, semicolon or tab)
with a ``video_id`` column and one or more group columns, whose values are kept as
written. An empty cell leaves the video out of that column's groups. Ids match a
cache's ``video_id`` with or without the ``.mp4`` extension.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cache.manifest import plural
from common.errors import TraitcacheError

VIDEO_COLUMN = "video_id"
CHALEARN_VIDEO_COLUMN = "VideoName"
CHALEARN_IGNORED = ("YouTubeID",)  # the source video, not a group
# ChaLearn's codes, as its annotation README defines them.
CHALEARN_CODES = {
    "Ethnicity": {"1": "Asian", "2": "Caucasian", "3": "African-American"},
    "Gender": {"1": "male", "2": "female"},
}
DELIMITERS = ";,\t"  # ChaLearn's semicolon first: its header holds no comma
VIDEO_EXTENSION = ".mp4"  # ChaLearn's ids carry it in the cache; a groups file may leave it out
EXAMPLE_IDS = 2  # ids quoted when a file matches no video


class GroupsError(TraitcacheError):
    """A groups file cannot be read, or cannot be matched with the videos it is meant to describe."""


@dataclass(frozen=True)
class GroupTable:
    """Group memberships read from one or more files.

    Attributes
    ----------
    paths : tuple of Path
    columns : dict
        column -> {video key: group name}; the key is the id without ``.mp4``.
    """

    paths: tuple[Path, ...]
    columns: dict[str, dict[str, str]]

    @property
    def described(self) -> str:
        return ", ".join(map(str, self.paths))

    def for_videos(self, video_ids: np.ndarray) -> dict[str, np.ndarray]:
        """Each column's group per video.

        Parameters
        ----------
        video_ids : np.ndarray
            (N,) str, the cache's ids.

        Returns
        -------
        dict
            column -> (N,) object array of group names, None where the file gives none.
        """
        keys = [video_key(video_id) for video_id in video_ids]
        return {
            column: np.array([groups.get(key) for key in keys], dtype=object) for column, groups in self.columns.items()
        }

    def unmatched(self, video_ids: np.ndarray) -> int:
        """How many of ``video_ids`` no column names."""
        known = set().union(*(groups.keys() for groups in self.columns.values()))
        return sum(video_key(video_id) not in known for video_id in video_ids)

    def check_matches(self, video_ids: np.ndarray, split: str) -> None:
        """Refuse a table that names none of ``video_ids`` (the videos of ``split``).

        Raises
        ------
        GroupsError
            Quoting an id of each side, so that a naming mismatch shows.
        """
        if len(video_ids) and self.unmatched(video_ids) < len(video_ids):
            return
        ours = ", ".join(map(str, list(video_ids)[:EXAMPLE_IDS])) or "none"
        theirs = ", ".join(list(next(iter(self.columns.values())))[:EXAMPLE_IDS])
        raise GroupsError(
            f"{self.described}: matches none of the {plural(len(video_ids), 'video')} of split {split!r}"
            f" (split ids: {ours}; file ids: {theirs}); pass the groups file of that split"
        )


def video_key(video_id: str) -> str:
    """The id a groups file and a cache share: ``_01AyUz9J9I.002.mp4`` -> ``_01AyUz9J9I.002``."""
    video_id = str(video_id).strip()
    return video_id[: -len(VIDEO_EXTENSION)] if video_id.lower().endswith(VIDEO_EXTENSION) else video_id


def _text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise GroupsError(f"{path}: no such groups file") from None
    except OSError as error:
        raise GroupsError(f"{path}: cannot read the groups file ({error.strerror})") from error
    binary = GroupsError(
        f"{path}: not a CSV file (binary content); pass ChaLearn's eth_gender_annotations_*.csv"
        f" or a CSV with a {VIDEO_COLUMN} column and group columns"
    )
    if b"\0" in data:  # valid UTF-8, yet no text file holds it
        raise binary
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise binary from None


def _header_problem(path: Path, header: list[str]) -> GroupsError:
    return GroupsError(
        f"{path}: no recognisable header (got {';'.join(header)[:80]!r}); expected ChaLearn's"
        f" VideoName;YouTubeID;Ethnicity;Gender or a {VIDEO_COLUMN} column and one or more group columns"
    )


def _rows(path: Path) -> tuple[list[str], list[list[str]]]:
    text = _text(path)
    first = text.split("\n", 1)[0]
    delimiter = next((mark for mark in DELIMITERS if mark in first), ",")
    try:
        rows = [row for row in csv.reader(io.StringIO(text), delimiter=delimiter) if any(cell.strip() for cell in row)]
    except csv.Error as error:
        raise GroupsError(f"{path}: not a readable CSV file ({error})") from error
    if not rows:
        raise GroupsError(f"{path}: empty groups file")
    return [cell.strip() for cell in rows[0]], rows[1:]


def read_groups_file(path: Path) -> dict[str, dict[str, str]]:
    """column -> {video key: group} of one file.

    Raises
    ------
    GroupsError
        Missing, binary, without a recognisable header, a row of the wrong width, an
        unknown ChaLearn code, or a video given two groups of one column.
    """
    path = Path(path)
    header, rows = _rows(path)
    chalearn = CHALEARN_VIDEO_COLUMN in header and all(column in header for column in CHALEARN_CODES)
    if chalearn:
        video_column = CHALEARN_VIDEO_COLUMN
        group_columns = [column for column in header if column not in (video_column, *CHALEARN_IGNORED)]
    elif VIDEO_COLUMN in header:
        video_column = VIDEO_COLUMN
        group_columns = [column for column in header if column and column != video_column]
    else:
        raise _header_problem(path, header)
    if not group_columns:
        raise _header_problem(path, header)
    video_index = header.index(video_column)
    columns: dict[str, dict[str, str]] = {column: {} for column in group_columns}
    for line, row in enumerate(rows, start=2):
        if len(row) != len(header):
            raise GroupsError(f"{path}:{line}: {len(row)} fields where the header has {len(header)}")
        key = video_key(row[video_index])
        for column in group_columns:
            value = row[header.index(column)].strip()
            if not value:
                continue
            if chalearn and column in CHALEARN_CODES:
                codes = CHALEARN_CODES[column]
                if value not in codes:
                    known = ", ".join(f"{code} {name}" for code, name in codes.items())
                    raise GroupsError(f"{path}:{line}: {column} code {value!r} is not one of ChaLearn's ({known})")
                value = codes[value]
            if columns[column].setdefault(key, value) != value:
                raise GroupsError(
                    f"{path}:{line}: video {key} is in {column} group {columns[column][key]!r} on an earlier row"
                    f" and {value!r} here; keep one"
                )
    return columns


def read_groups(paths: list[Path] | tuple[Path, ...]) -> GroupTable:
    """One table from one or more groups files (e.g. ChaLearn's dev and test files).

    Raises
    ------
    GroupsError
        A file cannot be read (see ``read_groups_file``), or two files disagree on a video.
    """
    paths = tuple(Path(path) for path in paths)
    columns: dict[str, dict[str, str]] = {}
    for path in paths:
        for column, groups in read_groups_file(path).items():
            merged = columns.setdefault(column, {})
            for key, value in groups.items():
                if merged.setdefault(key, value) != value:
                    raise GroupsError(
                        f"{path}: video {key} is in {column} group {value!r} here and {merged[key]!r} in an earlier file"
                    )
    return GroupTable(paths, columns)
