"""Ensembles: the weighted average of several runs' trait predictions.

``build_ensemble`` writes an ensemble folder (its files: ``train.run``), which refers
to its members' folders instead of copying their models; ``evaluate``, ``predict``,
``audit`` and ``compare`` accept it wherever they accept a run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cache.manifest import config_differences
from common.errors import OptionError
from common.options import flatten, option
from train.metrics import format_table, score
from train.predictions import PREDICTIONS_FILE, SplitPredictions, read_predictions, write_predictions
from train.run import (
    ENSEMBLE_FILE,
    FolderWriter,
    Run,
    RunError,
    open_run,
    run_record,
    weighted_label_mean,
    weights_warning,
)

WEIGHTINGS = ("equal", "validation")
LABEL_TOLERANCE = 1e-6  # members' labels of one video must agree to float32 rounding


@dataclass(frozen=True)
class EnsembleOptions:
    """Everything that decides an ensemble.

    Attributes
    ----------
    members : tuple of str
        Run folders to average (at least two, each once).
    out : str
        Ensemble folder to write.
    weighting : str
        ``equal``, or ``validation``: each member weighted by how far its mean
        accuracy on its selection split exceeds its training-mean baseline.
    overwrite : bool
        Replace an existing ensemble in ``out``.
    """

    members: tuple[str, ...]  # the command line's arguments RUN...
    out: str  # the command line's required --out
    weighting: str = option(
        "equal",
        "equal, or validation: each run weighted by its gain over the baseline on its selection split.",
        metavar="equal|validation",
    )
    overwrite: bool = option(False, "Replace an ensemble already in OUT.", flag="--overwrite/--no-overwrite")

    def __post_init__(self):
        object.__setattr__(self, "members", tuple(str(member) for member in self.members))
        resolved = [Path(member).resolve() for member in self.members]
        if len(self.members) < 2:
            raise RunError(f"an ensemble needs at least two runs, got {len(self.members)}")
        if len(set(resolved)) != len(resolved):
            raise RunError(f"a run is named twice among the members: {', '.join(self.members)}")
        if self.weighting not in WEIGHTINGS:
            raise OptionError("weighting", f"must be one of {', '.join(WEIGHTINGS)}, got {self.weighting!r}")

    def to_dict(self) -> dict:
        return {**flatten(self), "members": list(self.members)}


def _open_members(paths: tuple[str, ...]) -> list[Run]:
    members = []
    for path in paths:
        if (Path(path) / ENSEMBLE_FILE).exists():
            raise RunError(f"{path}: is an ensemble; name its member runs instead")
        members.append(open_run(Path(path)))
    first = members[0]
    for member in members[1:]:
        if member.info["config_hash"] != first.info["config_hash"]:
            differences = "; ".join(config_differences(first.extraction_config, member.extraction_config))
            raise RunError(
                f"{member.path}: built from a cache with a different extraction config than {first.path} ({first.path.name} -> {member.path.name}: {differences}); ensemble members must share one"
            )
    return members


def member_weights(members: list[Run], weighting: str) -> np.ndarray:
    """(M,) weights summing to 1.

    ``validation`` weighs each member by its gain over the baseline on its selection
    split (a member no better than the baseline gets 0).

    Raises
    ------
    RunError
        Under ``validation``, no member beats its baseline.
    """
    if weighting == "equal":
        return np.full(len(members), 1.0 / len(members))
    gains = []
    for member in members:
        entry = member.metrics[member.selection_split]
        gains.append(max(entry["mean_accuracy"] - entry["baseline_mean_accuracy"], 0.0))
    if sum(gains) <= 0:
        raise OptionError(
            "weighting",
            f"validation: no member beats its training-mean baseline on its selection split ({', '.join(str(member.path) for member in members)}); pass `weighting` equal",
        )
    return np.array(gains) / sum(gains)


def _common_splits(members: list[Run]) -> tuple[dict[str, list[SplitPredictions]], dict[str, str]]:
    """Per split scored by every member on the same videos: their predictions, aligned to the first member's order.

    Also returns split -> why it was left out.
    """
    per_member = [read_predictions(member.path / PREDICTIONS_FILE) for member in members]
    common, left_out = {}, {}
    for name, first in per_member[0].items():
        missing = [str(member.path) for member, predictions in zip(members, per_member) if name not in predictions]
        if missing:
            left_out[name] = f"not scored by {', '.join(missing)}"
            continue
        if any(
            set(predictions[name].video_ids) != set(first.video_ids)
            or len(predictions[name].video_ids) != len(first.video_ids)
            for predictions in per_member
        ):
            left_out[name] = "the members were scored on different videos"
            continue
        aligned = [predictions[name].aligned_to(first.video_ids) for predictions in per_member]
        if any(np.max(np.abs(split.labels - first.labels), initial=0.0) > LABEL_TOLERANCE for split in aligned):
            raise RunError(
                f"split {name!r}: the members were scored against different labels (they changed in the cache between the fits); train them again on the same labels"
            )
        common[name] = aligned
    return common, left_out


def _check_targets(members: list[Run]) -> None:
    if len({member.targets for member in members}) > 1:
        raise RunError(
            "the members predict different targets ("
            + "; ".join(f"{member.path}: {','.join(member.targets)}" for member in members)
            + "); ensemble runs trained with the same --targets"
        )


def _average(common: dict[str, list[SplitPredictions]], weights: np.ndarray) -> dict[str, SplitPredictions]:
    """Split -> the members' (M) aligned predictions averaged with (M,) ``weights``."""
    return {
        name: SplitPredictions(
            splits[0].video_ids,
            np.tensordot(weights, np.stack([split.predictions for split in splits]), axes=1).astype(np.float32),
            splits[0].labels,
            splits[0].targets,
        )
        for name, splits in common.items()
    }


@dataclass(frozen=True)
class Roles:
    """Which splits the members trained on and selected on.

    Attributes
    ----------
    train_splits : list of str
        Every split some member was fitted on, sorted.
    selections : set of str
        The members' selection splits.
    """

    train_splits: list[str]
    selections: set[str]

    @property
    def selection(self) -> str:
        """The ensemble's selection split: the first of the members'."""
        return sorted(self.selections)[0]

    def of(self, name: str) -> str:
        return "train" if name in self.train_splits else "selection" if name == self.selection else "report"


def _roles(members: list[Run]) -> Roles:
    return Roles(
        sorted({split for member in members for split in member.training_splits}),
        {member.selection_split for member in members},
    )


def _write_folder(
    writer: FolderWriter,
    options: EnsembleOptions,
    members: list[Run],
    weights: np.ndarray,
    roles: Roles,
    averaged: dict[str, SplitPredictions],
    left_out: dict[str, str],
    metrics: dict[str, dict],
) -> None:
    first = members[0]
    writer.write(
        ENSEMBLE_FILE,
        {
            **options.to_dict(),
            "members": [
                {"path": str(member.path.resolve()), "weight": float(weight), "created": member.info.get("created")}
                for member, weight in zip(members, weights)
            ],
            "train_splits": roles.train_splits,
        },
    )
    writer.write_record(
        run_record(
            first.info["cache"],
            first.info["config_hash"],
            first.extraction_config,
            first.shape,
            videos={name: len(split.video_ids) for name, split in averaged.items()},
            selection_split=roles.selection,
            left_out_splits=left_out,
        )
    )
    write_predictions(writer.path / PREDICTIONS_FILE, averaged)
    writer.finish(metrics)


def _report(
    options: EnsembleOptions,
    members: list[Run],
    weights: np.ndarray,
    roles: Roles,
    left_out: dict[str, str],
    metrics: dict[str, dict],
) -> list[str]:
    """The lines ``build_ensemble`` prints: weights, left-out splits, warnings, scores."""
    lines = [
        f"ensemble of {len(members)} runs, {options.weighting} weights: "
        + ", ".join(f"{member.path.name} {weight:.3f}" for member, weight in zip(members, weights))
    ]
    lines += [f"left out split {name}: {why}" for name, why in left_out.items()]
    if len(roles.selections) > 1:
        lines.append(f"warning: the members were selected on different splits ({', '.join(sorted(roles.selections))})")
    if options.weighting == "validation":
        lines.append(
            f"note: the weights were fitted on {', '.join(sorted(roles.selections))}, so the ensemble's score there is optimistic; judge it on another split"
        )
    lines.append(format_table(metrics))
    warning = weights_warning(members[0].extraction_config)
    return lines + ([warning] if warning else []) + [f"ensemble saved to {Path(options.out)}"]


def build_ensemble(options: EnsembleOptions, echo: Callable[[str], None] = print) -> dict[str, dict]:
    """Average the members' saved predictions into an ensemble folder and score it.

    Parameters
    ----------
    options : EnsembleOptions
    echo : callable
        Receives each line of the report.

    Returns
    -------
    dict
        split -> scores (``train.metrics.score``, baseline: the members' weighted
        training means), as written to ``metrics.json``.

    Raises
    ------
    RunError
        A member is not a finished run, members come from caches with different
        extraction configs (the differences are named), they share no split scored
        on the same videos, or ``out`` holds something else.
    train.predictions.PredictionsError
        A member has no predictions.csv.
    """
    members = _open_members(options.members)
    _check_targets(members)
    weights = member_weights(members, options.weighting)
    common, left_out = _common_splits(members)
    if not common:
        raise RunError(
            f"the members share no split scored on the same videos ({'; '.join(f'{name}: {why}' for name, why in left_out.items())})"
        )
    writer = FolderWriter(Path(options.out), "ensemble")
    writer.refuse_existing(options.overwrite)
    writer.clear()
    baseline = weighted_label_mean(members, weights)
    averaged = _average(common, weights)
    roles = _roles(members)
    metrics = {
        name: {**score(split.labels, split.predictions, baseline, split.targets), "role": roles.of(name)}
        for name, split in averaged.items()
    }
    _write_folder(writer, options, members, weights, roles, averaged, left_out, metrics)
    for line in _report(options, members, weights, roles, left_out, metrics):
        echo(line)
    return metrics
