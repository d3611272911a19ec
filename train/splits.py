"""Which videos to fit on, to select on and to report: split names, source videos and the hold-out."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cache.manifest import plural
from common.errors import OptionError
from train.config import TRAIN_SPLIT, VALIDATION_SPLIT, FitOptions
from train.dataset import DataError, SplitData

HOLDOUT_SPLIT = "holdout"  # reporting name of the training videos held out for selection


class SplitNameError(OptionError, DataError):
    """A split named in the options is not among the cache's (labelled) splits."""


def source_ids(video_ids: np.ndarray, delimiter: str) -> np.ndarray:
    """(N,) str: each video's source, its id up to the first ``delimiter``.

    ChaLearn's ``_01AyUz9J9I.002.mp4`` is clip 2 of the YouTube video
    ``_01AyUz9J9I``. With an empty ``delimiter`` every video is its own source.
    """
    if not delimiter:
        return np.asarray(video_ids, dtype=str)
    return np.array([str(video_id).split(delimiter, 1)[0] for video_id in video_ids], dtype=str)


def count_sources(video_ids: np.ndarray, delimiter: str) -> int:
    """How many distinct source videos ``video_ids`` come from (see ``source_ids``)."""
    return len(np.unique(source_ids(video_ids, delimiter)))


def resolve_splits(
    available: list[str], train_split: str, validation_split: str, kind: str = "labelled split"
) -> tuple[str, str | None]:
    """Which split to fit on and which to select on.

    Parameters
    ----------
    available : list of str
        Split names to choose from.
    train_split, validation_split : str
        The names asked for.
    kind : str
        What ``available`` holds, for the error message.

    Returns
    -------
    (str, str or None)
        The training split, and the selection split or None when a share of the
        training videos is to be held out instead.

    Raises
    ------
    SplitNameError
        A name that is not available, unless it is the default: without a ``train``
        split the only one is fitted on, and without a ``validation`` split (or when
        it is the training split) a share of the training videos is held out.
    """
    listed = ", ".join(sorted(available)) or "none"
    if train_split in available:
        train_name = train_split
    elif train_split == TRAIN_SPLIT and len(available) == 1:
        train_name = available[0]
    else:
        raise SplitNameError("train_split", f"{train_split!r} names no {kind}; the cache's {kind}s are: {listed}")
    if validation_split in available and validation_split != train_name:
        return train_name, validation_split
    if validation_split == VALIDATION_SPLIT:
        return train_name, None
    if validation_split == train_name:
        raise SplitNameError(
            "validation_split",
            f"{validation_split!r} is also the training split; name another of: {listed}, or leave it out to hold out a share of {train_name!r}",
        )
    raise SplitNameError("validation_split", f"{validation_split!r} names no {kind}; the cache's {kind}s are: {listed}")


def holdout_rows(sources: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Draw a seeded share of the source videos; every clip of a source goes with it.

    Parameters
    ----------
    sources : np.ndarray
        (N,) str source of each video (``source_ids``).
    fraction : float
        Share of the distinct sources to hold out (at least one, never all).
    seed : int

    Returns
    -------
    (np.ndarray, np.ndarray)
        Sorted row indices to fit on and to hold out.

    Raises
    ------
    DataError
        Fewer than two sources.
    """
    unique, source_of_row = np.unique(sources, return_inverse=True)
    held = max(1, round(fraction * len(unique)))
    if len(unique) - held < 1:
        raise DataError(
            f"{plural(len(sources), 'training video')} from {plural(len(unique), 'source video')}: too few to hold out a validation fraction of {fraction}; add videos or name a validation split"
        )
    chosen = np.random.default_rng(seed).permutation(len(unique))[:held]
    held_out = np.isin(source_of_row, chosen)
    return np.flatnonzero(~held_out), np.flatnonzero(held_out)


@dataclass(frozen=True)
class Partition:
    """Videos to fit on, to select on, and to report, under their split names.

    Attributes
    ----------
    train_name : str
        The split fitted on (all of it, or what the hold-out left).
    train : SplitData
    selection_name : str
        The split that selects the best epoch and early-stops: a cache split, or
        HOLDOUT_SPLIT.
    selection : SplitData
    others : dict of str to SplitData
        Every other labelled split, reported but never used for fitting.
    held_out : bool
        The selection videos were drawn from the training split.
    """

    train_name: str
    train: SplitData
    selection_name: str
    selection: SplitData
    others: dict[str, SplitData]
    held_out: bool

    def named(self) -> dict[str, SplitData]:
        """Every split by its own name: the training split, the selection split, then the others."""
        return {self.train_name: self.train, self.selection_name: self.selection, **self.others}

    def roles(self) -> dict[str, str]:
        """Split name -> ``train``, ``selection`` or ``report``, in ``named`` order."""
        return {self.train_name: "train", self.selection_name: "selection", **dict.fromkeys(self.others, "report")}


def partition(splits: dict[str, SplitData], options: FitOptions) -> Partition:
    """Choose training and selection videos (see ``resolve_splits``).

    Uses the options ``train_split`` and ``validation_split``; without a labelled
    validation split, a share ``validation_fraction`` of the training split's source
    videos (``source_ids`` with ``source_delimiter``), drawn with ``holdout_seed``,
    is held out, every clip of a source on the same side, and reported as HOLDOUT_SPLIT.

    Raises
    ------
    SplitNameError
        A split name that is not among the labelled splits.
    DataError
        No labelled videos, or too few training sources to hold some out.
    """
    if not splits:
        raise DataError(
            "the cache has no labelled videos; attach them with `python -m cache labels CACHE FILE` or `make features LABELS=...`"
        )
    train_name, selection_name = resolve_splits(list(splits), options.train_split, options.validation_split)
    train = splits[train_name]
    if selection_name is not None:
        others = {name: split for name, split in splits.items() if name not in (train_name, selection_name)}
        return Partition(train_name, train, selection_name, splits[selection_name], others, held_out=False)
    if HOLDOUT_SPLIT in splits:
        raise SplitNameError(
            "validation_split",
            f"must name a split: the cache has a split named {HOLDOUT_SPLIT!r}, the name a hold-out is reported under; set it to {HOLDOUT_SPLIT!r} to select on that split",
        )
    sources = source_ids(train.video_ids, options.source_delimiter)
    fit_rows, held_rows = holdout_rows(sources, options.validation_fraction, options.holdout_seed)
    others = {name: split for name, split in splits.items() if name != train_name}
    return Partition(train_name, train.subset(fit_rows), HOLDOUT_SPLIT, train.subset(held_rows), others, held_out=True)
