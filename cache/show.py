"""Contact sheets of cached videos: their face crops and boxes, to check the face pipeline by eye.

What ``python -m cache show`` draws. Uses matplotlib (without pyplot, so no display is
needed) and, for ``--frames`` only, the extraction's decoder (`extract.video.decode`) to
decode the source videos again at their recorded frame times.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from cache.reader import CacheReader
from common.errors import CacheError
from common.files import replace_atomically

FOUND_COLOUR = (0.0, 0.62, 0.0)  # green border: the face was detected in this very frame
BORROWED_COLOUR = (1.0, 0.5, 0.0)  # orange border: no face here, the crop uses the nearest frame's box
CELL_INCHES = 1.5  # side of the square each tile is centred in
GAP_INCHES = 0.2  # between tiles, so that neighbouring borders stay apart
TITLE_INCHES = 0.5  # room above each cell for the tile's two-line label
LABEL_INCHES = 1.25  # room left of each row for the video id
DOTS_PER_INCH = 100  # 130-pixel tiles: a 224-pixel crop stays recognisable
BORDER_POINTS = 4.0  # width of the found / borrowed border
BOX_POINTS = 1.5  # width of the face box drawn on a full frame
FONT_POINTS = 7


@dataclass(frozen=True)
class SheetRow:
    """What the sheet shows of one video.

    Attributes
    ----------
    video_id : str
        Its id in the cache.
    frame_times : np.ndarray
        (T*k,) float32 seconds from the first frame.
    face_found : np.ndarray
        (T*k,) bool, the face was detected in that frame (else borrowed from the nearest one).
    face_boxes : np.ndarray
        (T*k, 4) int32 x, y, w, h in source pixels; -1 where no face was detected.
    crops : np.ndarray or None
        (T*k, S, S, 3) uint8 RGB crops as embedded; None when the cache keeps none.
    frames : np.ndarray or None
        (T*k, H, W, 3) uint8 RGB full frames at ``frame_times``; None when not asked for
        or the source could not be decoded.
    """

    video_id: str
    frame_times: np.ndarray
    face_found: np.ndarray
    face_boxes: np.ndarray
    crops: np.ndarray | None
    frames: np.ndarray | None


def read_rows(cache_dir: Path, video_ids: list[str], with_frames: bool) -> tuple[list[SheetRow], list[str]]:
    """Read the listed videos from a cache, and decode their frames when asked.

    Returns
    -------
    rows : list of SheetRow
        One per id, in the order given.
    warnings : list of str
        One line per source video that could not be decoded (its row shows crops only).

    Raises
    ------
    CacheError
        An id is not in the cache, or a video would show nothing (no crops kept and
        no frames asked for, or its source cannot be decoded).
    """
    reader = CacheReader(cache_dir)
    hashes = {entry.video_ids[row]: entry.content_hashes[row] for entry, row in reader.index.live()}
    unknown = [video_id for video_id in video_ids if video_id not in hashes]
    if unknown:
        raise CacheError(
            f"{cache_dir}: no video {', '.join(unknown)} in this cache;"
            f" `python -m cache export {cache_dir} --out videos.csv` lists the ids"
        )
    rows, warnings = [], []
    for video_id in video_ids:
        record = reader.record(hashes[video_id], crops=True)
        if record.face_crops is None and not with_frames:
            raise CacheError(
                f"{cache_dir}: built with --no-crops, so it holds no face crops to show;"
                " add --frames to draw the face boxes on the decoded videos, or extract again with --keep-crops"
            )
        frames = None
        if with_frames:
            frames, problem = _frames_or_problem(Path(record.source), record.frame_times)
            if problem and record.face_crops is None:
                raise CacheError(f"{video_id}: nothing to show: the cache holds no crops (--no-crops) and {problem}")
            if problem:
                warnings.append(f"{problem}; showing the crops of {video_id} only")
        rows.append(
            SheetRow(video_id, record.frame_times, record.face_found, record.face_boxes, record.face_crops, frames)
        )
    return rows, warnings


def _frames_or_problem(source: Path, times: np.ndarray) -> tuple[np.ndarray | None, str | None]:
    # The extraction's own decoder, given the recorded times in place of its sampling, picks
    # the very frames the crops were cut from (nearest frame, turned upright). Imported only
    # when --frames asks for it: `import cache` never loads the extraction package.
    from extract.video import DecodeOptions, VideoError, decode

    if not source.is_file():
        return None, f"{source}: source video not found (moved or deleted since the extraction)"
    try:
        return decode(source, DecodeOptions(), times=times).frames, None
    except VideoError as error:
        return None, f"{source}: cannot decode the source video ({error})"


def draw_sheet(rows: list[SheetRow]) -> Figure:
    """One row of tiles per video's crops and, below it, one per its frames.

    Each tile is titled with its time and ``found`` or ``borrowed``, and framed in
    `FOUND_COLOUR` or `BORROWED_COLOUR`; a frame tile also shows the detected box.

    Parameters
    ----------
    rows : list of SheetRow
        Videos in display order; each has crops, frames or both.

    Returns
    -------
    Figure
        ``T*k`` cells wide (the widest video) and one cell per image row tall; a tile's
        top left corner lies `GAP_INCHES` / 2 inside its cell, below `TITLE_INCHES`.
    """
    lines = [(row, kind) for row in rows for kind in ("crops", "frames") if getattr(row, kind) is not None]
    columns = max(len(row.frame_times) for row in rows)
    width = LABEL_INCHES + columns * CELL_INCHES
    height = len(lines) * (TITLE_INCHES + CELL_INCHES)
    tile = CELL_INCHES - GAP_INCHES
    figure = Figure(figsize=(width, height), dpi=DOTS_PER_INCH)
    for line, (row, kind) in enumerate(lines):
        for column in range(columns):
            left = LABEL_INCHES + column * CELL_INCHES + GAP_INCHES / 2
            top = line * (TITLE_INCHES + CELL_INCHES) + TITLE_INCHES + GAP_INCHES / 2
            axes = figure.add_axes((left / width, 1.0 - (top + tile) / height, tile / width, tile / height))
            axes.set_xticks([])
            axes.set_yticks([])
            if column >= len(row.frame_times):
                axes.set_axis_off()
                continue
            _draw_tile(axes, row, kind, column)
            if column == 0:
                axes.set_ylabel(f"{row.video_id}\n{kind}", fontsize=FONT_POINTS)
    return figure


def _draw_tile(axes, row: SheetRow, kind: str, index: int) -> None:
    found = bool(row.face_found[index])
    colour = FOUND_COLOUR if found else BORROWED_COLOUR
    axes.imshow(getattr(row, kind)[index], interpolation="nearest" if kind == "crops" else "antialiased")
    x, y, box_width, box_height = (int(value) for value in row.face_boxes[index])
    if kind == "frames" and box_width > 0:
        axes.add_patch(
            Rectangle((x, y), box_width, box_height, fill=False, edgecolor=FOUND_COLOUR, linewidth=BOX_POINTS)
        )
    axes.set_title(
        f"{row.frame_times[index]:.2f} s\n{'found' if found else 'borrowed'}", fontsize=FONT_POINTS, color=colour
    )
    for spine in axes.spines.values():
        spine.set_edgecolor(colour)
        spine.set_linewidth(BORDER_POINTS)


def write_sheet(figure: Figure, out: Path) -> None:
    """Save the figure to ``out`` (its format from the suffix, PNG without one), via a temporary name.

    Raises
    ------
    CacheError
        When matplotlib cannot write that format, or the file cannot be written.
    """
    out = Path(out)
    try:
        with replace_atomically(out) as temporary:
            figure.savefig(temporary, format=out.suffix.lstrip(".").lower() or "png")
    except ValueError as error:
        raise CacheError(f"{out}: cannot write this image format ({error}); use a .png name") from error
    except OSError as error:
        raise CacheError(f"{out}: cannot write ({error.strerror})") from error


def contact_sheet(cache_dir: Path, video_ids: list[str], out: Path, with_frames: bool = False) -> list[str]:
    """Draw the listed videos of a cache into an image file; returns warnings (see `read_rows`)."""
    rows, warnings = read_rows(cache_dir, video_ids, with_frames)
    write_sheet(draw_sheet(rows), out)
    return warnings
