"""Label files: ChaLearn annotation pickles (read safely) and CSV tables.

Labels live in ``labels.csv`` beside the shards and are joined by ``video_id`` at
read time, so they can be attached or replaced without decoding any video.
"""

from __future__ import annotations

import csv
import io
import math
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cache.lock import CacheLock
from cache.manifest import Index, check_cache_exists, check_cache_folder, plural
from cache.schema import CONFIG_FILE, LABEL_NAMES, LABELS_FILE
from common.errors import CacheError, LabelError
from common.files import write_atomically

LabelTable = dict[str, dict[str, float]]  # video_id -> {label name -> score in [0, 1]}


def _float_dtype(*args):
    dtype = np.dtype(*args)
    if dtype.kind != "f":
        raise pickle.UnpicklingError(f"dtype {dtype} is not a float dtype")
    return dtype


def _float_scalar(dtype, *args):
    if not isinstance(dtype, np.dtype) or dtype.kind != "f":
        raise pickle.UnpicklingError(f"scalar of dtype {dtype!r} is not a float")
    return _NUMPY_SCALAR(dtype, *args)


_NUMPY_SCALAR = np.array(0.0)[()].__reduce__()[0]  # numpy's own scalar reconstructor

# The only globals the official ChaLearn pickles name; numpy 2 renamed numpy.core.
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "scalar"): _float_scalar,
    ("numpy._core.multiarray", "scalar"): _float_scalar,
    ("numpy", "dtype"): _float_dtype,
}


class _AnnotationUnpickler(pickle.Unpickler):
    """Unpickler that can rebuild float numpy scalars and nothing else."""

    def find_class(self, module: str, name: str):
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refused global {module}.{name}") from None


def load_annotation_pickle(path: Path) -> LabelTable:
    """Read a ChaLearn ``annotation_*.pkl`` (trait -> {video file name -> score}).

    Raises
    ------
    LabelError
        When the file asks for any global beyond float numpy scalars (nothing in it
        is executed), or does not have the ChaLearn layout.
    """
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            raw = _AnnotationUnpickler(handle, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as error:
        raise LabelError(
            f"{path}: not a safe ChaLearn annotation pickle ({error}); expected trait -> {{video: score}} with float scores only"
        ) from error
    if not isinstance(raw, dict) or not all(isinstance(scores, dict) for scores in raw.values()):
        raise LabelError(f"{path}: expected a dict of trait -> {{video file name -> score}}")
    table: LabelTable = {}
    for trait, scores in raw.items():
        if trait not in LABEL_NAMES:
            raise LabelError(f"{path}: unknown label {trait!r}; expected some of {', '.join(LABEL_NAMES)}")
        for video_id, score in scores.items():
            table.setdefault(str(video_id), {})[trait] = _checked_score(score, str(path), video_id, trait)
    return table


def _checked_score(value, where: str, video_id: str, label: str) -> float:
    """``value`` as a float in [0, 1], or a LabelError that starts with ``where`` (file, line)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise LabelError(f"{where}: {label} of {video_id} is {value!r}, not a number") from None
    if math.isnan(number) or not 0.0 <= number <= 1.0:
        raise LabelError(f"{where}: {label} of {video_id} is {number}, outside [0, 1]")
    return number


def load_label_csv(path: Path) -> LabelTable:
    """Read a CSV with a ``video_id`` column and one column per label in [0, 1].

    Empty cells mean unknown. Columns other than ``video_id`` and the label names
    are refused so that a misspelt trait is not silently dropped.
    """
    path = Path(path)
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            return _parse_label_csv(csv.DictReader(handle), path)
    except (UnicodeDecodeError, csv.Error) as error:
        raise LabelError(f"{path}: not a UTF-8 CSV file ({error})") from error


def _parse_label_csv(reader: csv.DictReader, path: Path) -> LabelTable:
    columns = reader.fieldnames or []
    if "video_id" not in columns:
        raise LabelError(f"{path}: no video_id column; expected a header like video_id,{','.join(LABEL_NAMES[:5])}")
    unknown = [column for column in columns if column not in LABEL_NAMES and column != "video_id"]
    if unknown:
        raise LabelError(
            f"{path}: unknown column(s) {', '.join(unknown)}; label columns must be among {', '.join(LABEL_NAMES)}"
        )
    if len(columns) == 1:
        raise LabelError(f"{path}: no label columns; expected some of {', '.join(LABEL_NAMES)}")
    labels = [column for column in columns if column != "video_id"]
    table: LabelTable = {}
    for row in reader:
        where = f"{path}:{reader.line_num}"
        video_id = row["video_id"]
        if not video_id:
            raise LabelError(f"{where}: empty video_id")
        if video_id in table:
            raise LabelError(f"{where}: duplicate video_id {video_id}")
        if None in row:  # DictReader files cells beyond the header under None
            raise LabelError(f"{where}: more cells than the header has columns")
        cells = {label: (row[label] or "").strip() for label in labels}
        table[video_id] = {label: _checked_score(cell, where, video_id, label) for label, cell in cells.items() if cell}
    return table


def load_label_file(path: Path) -> LabelTable:
    """Read labels from a ``.pkl`` (ChaLearn) or ``.csv`` file."""
    path = Path(path)
    if not path.is_file():
        raise LabelError(f"{path}: label file not found")
    if path.suffix == ".pkl":
        return load_annotation_pickle(path)
    if path.suffix == ".csv":
        return load_label_csv(path)
    raise LabelError(f"{path}: unsupported label file; expected a ChaLearn .pkl or a .csv with a video_id column")


def merge_tables(tables: list[LabelTable]) -> LabelTable:
    """Merge label tables; later tables win where they give the same label."""
    merged: LabelTable = {}
    for table in tables:
        for video_id, scores in table.items():
            merged.setdefault(video_id, {}).update(scores)
    return merged


def read_label_table(cache_dir: Path) -> LabelTable:
    """The labels attached to a cache (empty when none)."""
    path = Path(cache_dir) / LABELS_FILE
    return load_label_csv(path) if path.exists() else {}


def write_labels(cache_dir: Path, table: LabelTable, replace: bool = False) -> Path:
    """Attach labels to a cache, merging with those already there unless ``replace``.

    Raises
    ------
    LabelError
        When a label is not among LABEL_NAMES or a score is not a number in [0, 1]:
        ``labels.csv`` must always read back, or every reader of the cache fails.
    """
    path = Path(cache_dir) / LABELS_FILE
    for video_id, scores in table.items():
        unknown = [label for label in scores if label not in LABEL_NAMES]
        if unknown:
            raise LabelError(
                f"{video_id}: unknown label(s) {', '.join(map(str, unknown))}; expected some of {', '.join(LABEL_NAMES)}"
            )
    # float() first: repr() of a numpy scalar reads "np.float64(0.5)", which no CSV reader parses.
    checked = {
        video_id: {label: _checked_score(value, str(path), video_id, label) for label, value in scores.items()}
        for video_id, scores in table.items()
    }
    merged = checked if replace else merge_tables([read_label_table(cache_dir), checked])
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(("video_id", *LABEL_NAMES))
    for video_id in sorted(merged):
        scores = merged[video_id]
        writer.writerow((video_id, *(repr(scores[label]) if label in scores else "" for label in LABEL_NAMES)))
    write_atomically(path, buffer.getvalue())
    return path


def label_matrix(table: LabelTable, video_ids: list[str]) -> np.ndarray:
    """Labels of the given videos as a (N, 6) float32 array, NaN where unknown."""
    matrix = np.full((len(video_ids), len(LABEL_NAMES)), np.nan, dtype=np.float32)
    for row, video_id in enumerate(video_ids):
        for column, label in enumerate(LABEL_NAMES):
            value = table.get(video_id, {}).get(label)
            if value is not None:
                matrix[row, column] = value
    return matrix


def mismatch_hint(label_ids, cached_ids) -> str:
    """The likely reason label ids miss the cached ones, as a clause for a message.

    ChaLearn ids are file names (``_01AyUz9J9I.002.mp4``); a label table keyed by the
    name without its extension matches none of them, so that case is named with an
    example. Otherwise one id of each side is shown so the user can compare them.
    """
    cached = sorted(cached_ids)
    by_stem = {Path(video_id).stem: video_id for video_id in cached}
    bare = sorted(video_id for video_id in label_ids if video_id in by_stem)
    if bare:
        example = bare[0]
        return (
            f"{plural(len(bare), 'labelled id lacks', 'labelled ids lack')} the file extension the cached ids carry "
            f"({example!r} is cached as {by_stem[example]!r}): add it to the ids"
        )
    labelled = sorted(label_ids)
    if not labelled or not cached:
        return "the labels name no video" if not labelled else "the cache holds no video yet"
    return f"labelled ids look like {labelled[0]!r}, cached ids like {cached[0]!r}: is it the right label file?"


def labelled_count(table: LabelTable, video_ids) -> int:
    """How many of ``video_ids`` have at least one label in ``table``."""
    return sum(1 for video_id in video_ids if table.get(video_id))


@dataclass(frozen=True)
class AttachedLabels:
    """What ``attach_labels`` wrote: the file, and how its videos meet the cache's."""

    path: Path
    labelled: int  # videos in the label files
    cached: int  # videos in the cache
    matched: int  # cached videos that have labels now
    hint: str | None = None  # why no labelled id is cached, when none is


def attach_labels(cache_dir: Path, files: list[Path], replace: bool = False) -> AttachedLabels:
    """Read label files and attach them to a cache without decoding any video.

    Labels of videos not (yet) cached are kept for a later extraction; the counts let
    a caller say so, since a count far from the cache's size usually means the wrong
    label file.

    Raises
    ------
    CacheError
        When ``cache_dir`` is not a cache or the labels cannot be written.
    LabelError
        When a label file cannot be read or holds impossible values, or when
        ``replace`` would swap the labels of a cache that holds videos for labels
        of none of them (nothing is changed then: the usual cause is ids without
        their file extension, and the message says so).
    """
    check_cache_folder(cache_dir)
    check_cache_exists(cache_dir)
    if not (cache_dir / CONFIG_FILE).exists():
        raise CacheError(f"{cache_dir}: not a cache (no {CONFIG_FILE})")
    table = merge_tables([load_label_file(path) for path in files])
    try:
        # An extraction writes labels too; the lock keeps the two from interleaving.
        with CacheLock(cache_dir):
            cached = {entry.video_ids[row] for entry, row in Index.load(cache_dir).live()}
            matched = len(cached.intersection(table))
            hint = None if matched or not cached else mismatch_hint(table, cached)
            if replace and hint:
                names = ", ".join(str(path) for path in files)
                raise LabelError(
                    f"{names}: none of its {plural(len(table), 'labelled id')} is among the {plural(len(cached), 'cached video')}, "
                    f"so --replace would drop every label and attach none; nothing was changed. Likely cause: {hint}"
                )
            path = write_labels(cache_dir, table, replace=replace)
    except OSError as error:
        raise CacheError(f"{cache_dir}: cannot write labels ({error.strerror})") from error
    return AttachedLabels(path, len(table), len(cached), matched, hint)


def label_file_warnings(tables: dict[Path, LabelTable], video_ids: set[str]) -> list[str]:
    """One warning for each label file that labels none of ``video_ids`` (the cached
    videos), with the likely cause; none when there is no video to label."""
    return [
        f"{path}: labels none of the {plural(len(video_ids), 'cached video')} "
        f"(it has {plural(len(table), 'labelled id')}); {mismatch_hint(table, video_ids)}"
        for path, table in tables.items()
        if video_ids and not video_ids.intersection(table)
    ]
