"""Ensembles: the weighted average of several runs' trait predictions.

An ensemble folder (``runs/<name>``) holds ``ensemble.json`` (the resolved
EnsembleOptions, member folders and weights), ``run.json`` (the members' common
extraction config, as a run's), ``predictions.csv`` and ``metrics.json``. It
refers to its members' folders instead of copying their models; ``evaluate``,
``predict`` and ``compare`` accept it wherever they accept a run.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from cache.errors import OptionError
from cache.manifest import config_differences
from cache.options import flatten, option
from cache.schema import OPTIONS_FILE
from train.dataset import SplitData
from train.evaluate import predict_split
from train.metrics import format_table, score
from train.predictions import PREDICTIONS_FILE, SplitPredictions, read_predictions, write_predictions
from train.run import (
    METRICS_FILE,
    RUN_FILE,
    RecordedCache,
    Run,
    RunError,
    open_run,
    read_json,
    weights_warning,
    write_json,
)

ENSEMBLE_FILE = "ensemble.json"
WEIGHTINGS = ("equal", "validation")
DEFAULT_SELECTION_SPLIT = "validation"  # runs written before run.json named their selection split chose on it
LABEL_TOLERANCE = 1e-6  # members' labels of one video must agree to float32 rounding


def _roles(metrics: dict) -> dict[str, str]:
    return {name: entry["role"] for name, entry in metrics.items() if isinstance(entry, dict) and "role" in entry}


def selection_split_of(info: dict, metrics: dict) -> str:
    """The split that selected a run's model: the one metrics.json gives the role
    ``selection``, else run.json's or metrics.json's ``selection_split``, else validation."""
    selected = [name for name, role in _roles(metrics).items() if role == "selection"]
    if selected:
        return selected[0]
    for source in (info, metrics):
        if isinstance(source.get("selection_split"), str):
            return source["selection_split"]
    return DEFAULT_SELECTION_SPLIT


def training_split_of(metrics: dict, default: str) -> str:
    """The split a run was fitted on: the one metrics.json gives the role ``train``, else ``default``."""
    return next((name for name, role in _roles(metrics).items() if role == "train"), default)


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


@dataclass(frozen=True)
class Ensemble(RecordedCache):
    """A finished ensemble, opened for evaluation or prediction.

    Attributes
    ----------
    path : Path
    members : tuple of Run
    weights : np.ndarray
        (M,) float64, summing to 1.
    info : dict
        Contents of the ensemble's run.json.
    """

    path: Path
    members: tuple[Run, ...]
    weights: np.ndarray
    info: dict

    @property
    def label_mean(self) -> np.ndarray:
        """(k,) the ensemble's baseline prediction (``weighted_label_mean``)."""
        return weighted_label_mean(self.members, self.weights)

    @property
    def targets(self) -> tuple[str, ...]:
        """The labels the members predict (``build_ensemble`` refuses members with other ones)."""
        return self.members[0].targets

    def check_cache(self, config: dict, config_hash: str, cache: Path) -> None:
        """Refuse a cache built with another extraction config, naming the differences."""
        if config_hash != self.info["config_hash"]:
            differences = "; ".join(config_differences(self.extraction_config, config))
            raise RunError(
                f"{cache} was built with a different extraction config than ensemble {self.path}'s members were trained on (ensemble -> cache: {differences}); use a cache built with their options"
            )

    def predict(self, splits: dict[str, SplitData]) -> dict[str, np.ndarray]:
        """Split -> (N, k) float32: the members' predictions, weighted (each model loaded once)."""
        per_member = [_predict_run(member, splits) for member in self.members]
        return {
            name: np.tensordot(self.weights, np.stack([predicted[name] for predicted in per_member]), axes=1).astype(
                np.float32
            )
            for name in splits
        }


def weighted_label_mean(members: tuple[Run, ...] | list[Run], weights: np.ndarray) -> np.ndarray:
    """(5,) float64 the members' training means, weighted by (M,) ``weights``: an ensemble's baseline prediction."""
    return weights @ np.stack([member.label_mean for member in members]).astype(np.float64)


def open_ensemble(path: Path) -> Ensemble:
    """Open a finished ensemble folder.

    Raises
    ------
    RunError
        A member is gone, or was trained again after the ensemble was built.
    """
    path = Path(path)
    recorded = read_json(path / ENSEMBLE_FILE)
    info = read_json(path / RUN_FILE)
    members = []
    for member in recorded["members"]:
        opened = open_run(Path(member["path"]))
        if opened.info.get("created") != member["created"]:
            raise RunError(
                f"{path}: member {member['path']} was trained again after the ensemble was built; build it again with `python -m train ensemble`"
            )
        members.append(opened)
    return Ensemble(
        path, tuple(members), np.array([member["weight"] for member in recorded["members"]], dtype=np.float64), info
    )


def open_run_or_ensemble(path: Path) -> Run | Ensemble:
    """A run folder, or an ensemble folder (it holds ENSEMBLE_FILE)."""
    return open_ensemble(path) if (Path(path) / ENSEMBLE_FILE).exists() else open_run(path)


def _predict_run(run: Run, splits: dict[str, SplitData]) -> dict[str, np.ndarray]:
    model = run.load_model()
    return {name: predict_split(model, split, run.normalization, run.shape) for name, split in splits.items()}


def predict_with(opened: Run | Ensemble, splits: dict[str, SplitData]) -> dict[str, np.ndarray]:
    """Split -> (N, k) float32 predictions of a run's model, or of an ensemble's members weighted."""
    return opened.predict(splits) if isinstance(opened, Ensemble) else _predict_run(opened, splits)


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
        metrics = read_json(member.path / METRICS_FILE)
        entry = metrics[selection_split_of(member.info, metrics)]
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


def _prepare_folder(out: Path, overwrite: bool) -> None:
    if out.exists() and any(out.iterdir()):
        if not (out / ENSEMBLE_FILE).exists():
            kind = "a run" if (out / OPTIONS_FILE).exists() else "no ensemble"
            raise OptionError("out", f"{out}: folder is not empty and holds {kind}; choose another folder")
        if not overwrite:
            raise OptionError(
                "out", f"{out}: already holds an ensemble; pass `overwrite` to replace it or choose another folder"
            )
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)


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
    targets = {member.targets for member in members}
    if len(targets) > 1:
        raise RunError(
            "the members predict different targets ("
            + "; ".join(f"{member.path}: {','.join(member.targets)}" for member in members)
            + "); ensemble runs trained with the same --targets"
        )
    weights = member_weights(members, options.weighting)
    common, left_out = _common_splits(members)
    if not common:
        raise RunError(
            f"the members share no split scored on the same videos ({'; '.join(f'{name}: {why}' for name, why in left_out.items())})"
        )
    out = Path(options.out)
    _prepare_folder(out, options.overwrite)
    baseline = weighted_label_mean(members, weights)
    averaged = {
        name: SplitPredictions(
            splits[0].video_ids,
            np.tensordot(weights, np.stack([split.predictions for split in splits]), axes=1).astype(np.float32),
            splits[0].labels,
            splits[0].targets,
        )
        for name, splits in common.items()
    }
    member_metrics = [read_json(member.path / METRICS_FILE) for member in members]
    selections = {selection_split_of(member.info, metrics) for member, metrics in zip(members, member_metrics)}
    train_splits = sorted(
        {training_split_of(metrics, member.options.train_split) for member, metrics in zip(members, member_metrics)}
    )
    selection = sorted(selections)[0]

    def role(name: str) -> str:
        return "train" if name in train_splits else "selection" if name == selection else "report"

    metrics = {
        name: {**score(split.labels, split.predictions, baseline, split.targets), "role": role(name)}
        for name, split in averaged.items()
    }
    first = members[0]
    write_json(
        out / ENSEMBLE_FILE,
        {
            **options.to_dict(),
            "members": [
                {"path": str(member.path.resolve()), "weight": float(weight), "created": member.info.get("created")}
                for member, weight in zip(members, weights)
            ],
            "train_splits": train_splits,
        },
    )
    write_json(
        out / RUN_FILE,
        {
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "cache": first.info["cache"],
            "config_hash": first.info["config_hash"],
            "extraction_config": first.extraction_config,
            "frames": first.shape.frames,
            "frames_per_segment": first.shape.frames_per_segment,
            "videos": {name: len(split.video_ids) for name, split in averaged.items()},
            "selection_split": selection,
            "left_out_splits": left_out,
            "warning": weights_warning(first.extraction_config),
        },
    )
    write_predictions(out / PREDICTIONS_FILE, averaged)
    write_json(out / METRICS_FILE, metrics)  # last: its presence marks a finished ensemble
    echo(
        f"ensemble of {len(members)} runs, {options.weighting} weights: "
        + ", ".join(f"{member.path.name} {weight:.3f}" for member, weight in zip(members, weights))
    )
    for name, why in left_out.items():
        echo(f"left out split {name}: {why}")
    if len(selections) > 1:
        echo(f"warning: the members were selected on different splits ({', '.join(sorted(selections))})")
    if options.weighting == "validation":
        echo(
            f"note: the weights were fitted on {', '.join(sorted(selections))}, so the ensemble's score there is optimistic; judge it on another split"
        )
    echo(format_table(metrics))
    if weights_warning(first.extraction_config):
        echo(weights_warning(first.extraction_config))
    echo(f"ensemble saved to {out}")
    return metrics
