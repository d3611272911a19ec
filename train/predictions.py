"""Per-video predictions of a run, per split: ``predictions.csv`` in the run folder.

``compare`` bootstraps confidence intervals and paired tests from these rows and
``ensemble`` averages them, so neither needs the cache or a model again. Pure
numpy: importing this module does not import Keras.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cache.schema import TRAITS
from common.errors import TraitcacheError
from common.files import write_atomically

PREDICTIONS_FILE = "predictions.csv"
LABEL_SUFFIX = "_label"
KEY_COLUMNS = ("split", "video_id")  # then one column per target, then its label's
DIGITS = ".9g"  # nine significant digits write a float32 back exactly


class PredictionsError(TraitcacheError):
    """A predictions file is missing, damaged or does not fit the runs it is compared with."""


@dataclass(frozen=True)
class SplitPredictions:
    """What a model predicted for the labelled videos of one split.

    Attributes
    ----------
    video_ids : np.ndarray
        (N,) str.
    predictions : np.ndarray
        (N, k) float32 predicted scores, one column per target.
    labels : np.ndarray
        (N, k) float32 true scores the run was scored against.
    targets : tuple of str
        The k targets (the five traits unless the run was trained on others).
    """

    video_ids: np.ndarray
    predictions: np.ndarray
    labels: np.ndarray
    targets: tuple[str, ...] = TRAITS

    def aligned_to(self, video_ids: np.ndarray) -> SplitPredictions:
        """The same rows in the order of ``video_ids`` (which must hold exactly these videos)."""
        position = {video_id: row for row, video_id in enumerate(self.video_ids)}
        rows = np.array([position[video_id] for video_id in video_ids], dtype=np.int64)
        return SplitPredictions(self.video_ids[rows], self.predictions[rows], self.labels[rows], self.targets)


def trait_accuracies(labels: np.ndarray, predictions: np.ndarray) -> np.ndarray:
    """(N, k) per-video, per-target accuracy 1 - |label - prediction|.

    Their mean over videos and traits is the ChaLearn mean accuracy of the split.
    """
    return 1.0 - np.abs(np.asarray(labels, dtype=np.float64) - np.asarray(predictions, dtype=np.float64))


def write_predictions(path: Path, splits: dict[str, SplitPredictions]) -> None:
    """Write every split's rows to one CSV (temporary name, then rename); the splits share their targets."""
    targets = next(iter(splits.values())).targets if splits else TRAITS
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow((*KEY_COLUMNS, *targets, *(f"{target}{LABEL_SUFFIX}" for target in targets)))
    for name, split in splits.items():
        for video_id, predicted, label in zip(split.video_ids, split.predictions, split.labels):
            writer.writerow((name, video_id, *(format(float(value), DIGITS) for value in (*predicted, *label))))
    write_atomically(Path(path), buffer.getvalue())


def read_predictions(path: Path) -> dict[str, SplitPredictions]:
    """Split name -> its rows, as ``write_predictions`` wrote them.

    Raises
    ------
    PredictionsError
        The file is missing, lacks columns or holds a value that is not a number.
        Its targets are the columns that have a ``_label`` column beside them.
    """
    path = Path(path)
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle)
            fields = reader.fieldnames or ()
            targets = tuple(
                field.removesuffix(LABEL_SUFFIX)
                for field in fields
                if field.endswith(LABEL_SUFFIX) and field.removesuffix(LABEL_SUFFIX) in fields
            )
            missing = [column for column in KEY_COLUMNS if column not in fields] or (
                [] if targets else ["TARGET_label"]
            )
            if missing:
                raise PredictionsError(
                    f"{path}: not a predictions file (missing columns {', '.join(missing)}); it is written by `python -m train fit`"
                )
            rows: dict[str, list[dict[str, str]]] = {}
            for row in reader:
                rows.setdefault(row["split"], []).append(row)
    except FileNotFoundError:
        raise PredictionsError(
            f"{path}: no per-video predictions (the run predates them); train it again with `python -m train fit` to get intervals and tests"
        ) from None
    try:
        return {
            name: SplitPredictions(
                np.array([row["video_id"] for row in split_rows], dtype=object),
                np.array([[float(row[target]) for target in targets] for row in split_rows], dtype=np.float32),
                np.array(
                    [[float(row[f"{target}{LABEL_SUFFIX}"]) for target in targets] for row in split_rows],
                    dtype=np.float32,
                ),
                targets,
            )
            for name, split_rows in rows.items()
        }
    except (TypeError, ValueError) as error:
        raise PredictionsError(f"{path}: damaged predictions file ({error}); train the run again") from error
