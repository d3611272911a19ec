"""Per-group audit: who the model is wrong about, with intervals and a test of the gap.

For every group column of a groups file (``train.groups``) and every group in it, on
one split of a run or ensemble: the number of videos, the mean accuracy (1 - MAE over
the traits) with a bootstrap 95% interval, the predict-the-training-mean baseline for
that group, and per trait the mean signed error (prediction - label: above zero, the
model rates the group higher than the annotators did) with its interval. Per column,
the largest gap in mean accuracy between groups, with a bootstrap p-value.

The gap's test: the null hypothesis is that every group of the column has the same mean
accuracy (their spreads and shapes may differ). Each group's per-video accuracies are
shifted to mean zero, which makes the null true while keeping each group's own spread;
videos are resampled with replacement within each group (each group keeps its size),
and the p-value is the share of resamples whose gap (highest minus lowest group mean)
is at least the observed one, counted as (hits + 1) / (resamples + 1).

Everything is computed from the run's saved ``predictions.csv`` (per seed for a run of
several seeds, averaged as ``compare`` averages them): neither the cache nor a model is
opened.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cache.manifest import plural
from cache.schema import TRAITS
from common.errors import OptionError
from common.files import write_atomically
from common.options import option
from train.bootstrap import BOOTSTRAP_BATCH, BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, CONFIDENCE, mean_intervals
from train.groups import GroupsError, GroupTable, read_groups
from train.metrics import aligned, format_number
from train.predictions import PREDICTIONS_FILE, read_predictions, trait_accuracies
from train.run import RunError, open_folder, weights_warning

AUDIT_FILE = "audit.json"
# Videos a group needs before its figures are read: assuming a per-video accuracy spread
# of ~0.05 (an estimate, not measured here), a 95% interval over 30 videos is already
# about +-0.018, as wide as the gaps worth finding. Smaller groups are reported, marked,
# and left out of the worst group and the largest gap.
MIN_GROUP_VIDEOS = 30
NULL_HYPOTHESIS = "every group of the column has the same mean accuracy"


@dataclass(frozen=True)
class AuditOptions:
    """Everything that decides an audit.

    Attributes
    ----------
    run : str
        Run or ensemble folder.
    groups : tuple of str
        Groups files (ChaLearn's ``eth_gender_annotations_*.csv`` or ``video_id`` + group columns).
    split : str
        Split to audit.
    out : str
        File to write; empty: ``audit.json`` in the run folder.
    resamples : int
        Bootstrap resamples for intervals and the gap's p-value.
    min_group : int
        Videos a group needs to be read (smaller ones are marked).
    """

    run: str  # the command line's argument RUN
    groups: tuple[str, ...] = option(
        (),
        "Groups file: ChaLearn's eth_gender_annotations_*.csv as shipped, or a CSV with video_id and group columns"
        " (repeatable: e.g. ChaLearn's dev and test files).",
        metavar="FILE",
    )
    split: str = option("test", "Split to audit.", metavar="NAME")
    out: str = option("", "File to write the audit to; default audit.json in the run folder.", metavar="FILE")
    resamples: int = option(BOOTSTRAP_RESAMPLES, "Bootstrap resamples for the intervals and the p-value.", metavar="N")
    min_group: int = option(
        MIN_GROUP_VIDEOS, "Videos a group needs to be read; smaller groups are reported but marked.", metavar="N"
    )

    def __post_init__(self):
        object.__setattr__(self, "groups", tuple(str(path) for path in self.groups))
        if not self.groups:
            raise OptionError("groups", "is required: name a groups file")
        if self.resamples < 100:
            raise OptionError("resamples", f"must be at least 100, got {self.resamples}")
        if self.min_group < 2:
            raise OptionError("min_group", f"must be at least 2 (an interval needs two videos), got {self.min_group}")


@dataclass(frozen=True)
class AuditedSplit:
    """What a run predicted for one split, every seed kept.

    Attributes
    ----------
    video_ids : np.ndarray
        (N,) str.
    predictions : np.ndarray
        (S, N, K) float32, one slice per seed (S = 1 for one seed or an ensemble), K targets.
    labels : np.ndarray
        (N, K) float32.
    baseline : np.ndarray
        (K,) the training mean the run would predict knowing nothing.
    targets : tuple of str
        The K targets the run predicts (the five traits unless it was fitted with ``--targets``).
    warning : str or None
        The random-weights warning every report of such a run carries.
    """

    video_ids: np.ndarray
    predictions: np.ndarray
    labels: np.ndarray
    baseline: np.ndarray
    targets: tuple[str, ...] = TRAITS
    warning: str | None = None


def read_audited_split(folder: Path, split: str) -> AuditedSplit:
    """The per-video predictions of a run (every seed) or ensemble on ``split``.

    Raises
    ------
    RunError
        Not a finished run or ensemble, or no predictions for ``split``.
    train.predictions.PredictionsError
        No (or a damaged) predictions.csv.
    """
    folder = Path(folder)
    opened = open_folder(folder)
    per_folder = [read_predictions(path / PREDICTIONS_FILE) for path in opened.prediction_folders]
    if split not in per_folder[0]:
        scored = ", ".join(per_folder[0]) or "none"
        raise RunError(f"{folder}: no predictions for split {split!r} (it was scored on {scored}); pass `split`")
    first = per_folder[0][split]
    stacked = [first.predictions] + [other[split].aligned_to(first.video_ids).predictions for other in per_folder[1:]]
    return AuditedSplit(
        first.video_ids,
        np.stack(stacked),
        first.labels,
        np.asarray(opened.label_mean, np.float64),
        first.targets,
        weights_warning(opened.extraction_config),
    )


def gap_p_value(samples: list[np.ndarray], resamples: int = BOOTSTRAP_RESAMPLES) -> float | None:
    """Bootstrap p-value of the largest gap between group means (null: equal means).

    Parameters
    ----------
    samples : list of np.ndarray
        G >= 2 arrays (n_g,) of per-video values, one per group.
    resamples : int

    Returns
    -------
    float or None
        (hits + 1) / (resamples + 1), where hits counts resamples of the mean-centred
        groups (resampled within each group) whose max - min of means reaches the
        observed one; None with fewer than two groups or a group under two videos.
    """
    samples = [np.asarray(sample, dtype=np.float64) for sample in samples]
    if len(samples) < 2 or any(len(sample) < 2 for sample in samples):
        return None
    means = np.array([sample.mean() for sample in samples])
    observed = means.max() - means.min()
    centred = [sample - sample.mean() for sample in samples]
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    hits = 0
    for start in range(0, resamples, BOOTSTRAP_BATCH):
        size = min(BOOTSTRAP_BATCH, resamples - start)
        resampled = np.stack(
            [sample[rng.integers(0, len(sample), (size, len(sample)))].mean(axis=1) for sample in centred]
        )
        # Rounding of the centred means must not count as a gap when the observed gap is 0.
        hits += np.count_nonzero(resampled.max(axis=0) - resampled.min(axis=0) >= observed - 1e-12)
    return float((hits + 1) / (resamples + 1))


def _interval(values: np.ndarray | None, row: int) -> list[float] | None:
    return None if values is None else [float(values[row, 0]), float(values[row, 1])]


def audit_column(
    labels: np.ndarray,
    predictions: np.ndarray,
    baseline: np.ndarray,
    groups: np.ndarray,
    resamples: int = BOOTSTRAP_RESAMPLES,
    min_group: int = MIN_GROUP_VIDEOS,
) -> dict:
    """Per-group figures of one group column, and its largest gap.

    Parameters
    ----------
    labels : np.ndarray
        (N, K) true scores (K traits).
    predictions : np.ndarray
        (N, K), or (S, N, K) for S seeds: each seed's accuracy and signed error are
        averaged, as ``compare`` averages a run's seeds.
    baseline : np.ndarray
        (K,) the training mean.
    groups : np.ndarray
        (N,) group of each video; None leaves the video out.
    resamples, min_group : int

    Returns
    -------
    dict
        ``groups``: name -> ``n``, ``mean_accuracy``, ``ci95``, ``baseline_mean_accuracy``,
        ``signed_error`` and ``signed_error_ci95`` (lists of K), ``baseline_signed_error``
        (K: the training mean's, i.e. how the group's labels sit against it), ``too_small``;
        ``largest_gap``: ``highest``, ``lowest``, ``gap``, ``p_value`` over the groups
        of at least ``min_group`` videos, or None when fewer than two are that large.
    """
    labels = np.asarray(labels, dtype=np.float64)
    predictions = np.asarray(predictions, dtype=np.float64)
    if predictions.ndim == 2:
        predictions = predictions[None]
    accuracy = trait_accuracies(labels, predictions).mean(axis=(0, 2))
    signed = (predictions - labels).mean(axis=0)
    baseline_accuracy = trait_accuracies(labels, baseline).mean(axis=1)
    groups = np.asarray(groups, dtype=object)
    report, readable = {}, {}
    for name in sorted({group for group in groups if group is not None}, key=str):
        member = groups == name
        intervals = mean_intervals(np.vstack([accuracy[member], signed[member].T]), resamples)
        report[name] = {
            "n": int(member.sum()),
            "mean_accuracy": float(accuracy[member].mean()),
            "ci95": _interval(intervals, 0),
            "baseline_mean_accuracy": float(baseline_accuracy[member].mean()),
            "signed_error": [float(value) for value in signed[member].mean(axis=0)],
            "signed_error_ci95": [_interval(intervals, row) for row in range(1, signed.shape[1] + 1)],
            "baseline_signed_error": [float(value) for value in (baseline - labels[member]).mean(axis=0)],
            "too_small": bool(member.sum() < min_group),
        }
        if not report[name]["too_small"]:
            readable[name] = accuracy[member]
    gap = None
    if len(readable) >= 2:
        highest = max(readable, key=lambda name: report[name]["mean_accuracy"])
        lowest = min(readable, key=lambda name: report[name]["mean_accuracy"])
        gap = {
            "highest": highest,
            "lowest": lowest,
            "gap": report[highest]["mean_accuracy"] - report[lowest]["mean_accuracy"],
            "p_value": gap_p_value(list(readable.values()), resamples),
        }
    return {"groups": report, "largest_gap": gap}


def check_columns(columns: dict[str, np.ndarray], described: str, split: str) -> None:
    """Refuse a group column that holds one value among the videos of the split: nothing to compare.

    Raises
    ------
    GroupsError
    """
    for column, groups in columns.items():
        values = {group for group in groups if group is not None}
        if len(values) < 2:
            shown = ", ".join(map(repr, values)) or "no value"
            raise GroupsError(
                f"{described}: column {column!r} has {shown} among the videos of split {split!r}, one group at most:"
                " nothing to compare; give each column two groups or more"
            )


def audit_split(
    audited: AuditedSplit, table: GroupTable, split: str, resamples: int, min_group: int
) -> tuple[dict[str, dict], int]:
    """``audit_column`` of every column of ``table``, and how many videos of the split it does not name.

    Raises
    ------
    GroupsError
        The table names no video of the split, or a column has one group there.
    """
    table.check_matches(audited.video_ids, split)
    columns = table.for_videos(audited.video_ids)
    check_columns(columns, table.described, split)
    return (
        {
            column: audit_column(audited.labels, audited.predictions, audited.baseline, groups, resamples, min_group)
            for column, groups in columns.items()
        },
        table.unmatched(audited.video_ids),
    )


def summarize(columns: dict[str, dict]) -> dict:
    """The worst readable group over every column and the largest gap of any column.

    Returns
    -------
    dict
        ``worst_group`` (``column=group``), ``worst_accuracy`` and its training-mean
        ``worst_baseline_accuracy``, ``largest_gap``,
        ``gap_column``, ``gap_p_value``; None where no group (or column) is readable.
    """
    readable = [
        (entry["mean_accuracy"], f"{column}={name}", entry["baseline_mean_accuracy"])
        for column, result in columns.items()
        for name, entry in result["groups"].items()
        if not entry["too_small"]
    ]
    gaps = [(result["largest_gap"], column) for column, result in columns.items() if result["largest_gap"]]
    worst = min(readable, default=(None, None, None))
    largest = max(gaps, key=lambda pair: pair[0]["gap"], default=(None, None))
    return {
        "worst_group": worst[1],
        "worst_accuracy": worst[0],
        "worst_baseline_accuracy": worst[2],
        "largest_gap": None if largest[0] is None else largest[0]["gap"],
        "gap_column": largest[1],
        "gap_p_value": None if largest[0] is None else largest[0]["p_value"],
    }


def _signed(value: float) -> str:
    return f"{value:+.4f}"


def format_audit(result: dict) -> str:
    """The audit as terminal tables: per column, accuracy beside the baseline, then signed errors."""
    lines = [
        f"audit of {result['run']} on split {result['split']}: {plural(result['n'], 'video')} in groups from"
        f" {', '.join(result['groups_files'])}",
        f"accuracy = 1 - MAE over {', '.join(result['traits'])}; 95% CI: bootstrap over videos;"
        f" * = under {result['min_group']} videos, too small to read",
    ]
    for column, entry in result["columns"].items():
        rows = [(column, "n", "mean acc", "95% CI", "baseline")]
        errors = [(column, *result["traits"])]
        for name, group in entry["groups"].items():
            label = f"{name}{' *' if group['too_small'] else ''}"
            interval = group["ci95"]
            rows.append(
                (
                    label,
                    str(group["n"]),
                    format_number(group["mean_accuracy"]),
                    "-" if interval is None else f"[{interval[0]:.4f}, {interval[1]:.4f}]",
                    format_number(group["baseline_mean_accuracy"]),
                )
            )
            errors.append(
                (
                    label,
                    *(
                        _signed(value)
                        + ("" if low_high is None else f" [{_signed(low_high[0])}, {_signed(low_high[1])}]")
                        for value, low_high in zip(group["signed_error"], group["signed_error_ci95"])
                    ),
                )
            )
            errors.append(("  baseline", *(_signed(value) for value in group["baseline_signed_error"])))
        gap = entry["largest_gap"]
        verdict = (
            f"largest gap: {gap['highest']} - {gap['lowest']} = {gap['gap']:.4f},"
            f" p = {format_number(gap['p_value'])} (bootstrap within groups; null: {NULL_HYPOTHESIS})"
            if gap
            else f"largest gap: none (fewer than two groups of {result['min_group']} videos or more)"
        )
        title = "signed error (prediction - label) with 95% CI; baseline: the training mean's"
        lines += ["", aligned(rows), verdict, "", title, aligned(errors)]
    if result["unmatched"]:
        lines += [
            "",
            f"note: {plural(result['unmatched'], 'video')} of split {result['split']} are in no groups file"
            " and were left out",
        ]
    return "\n".join(lines)


def audit(options: AuditOptions, echo: Callable[[str], None] = print) -> dict:
    """Audit a run or ensemble per group, print the tables and write the JSON.

    Parameters
    ----------
    options : AuditOptions
    echo : callable
        Receives the report.

    Returns
    -------
    dict
        As written: ``run``, ``split``, ``groups_files``, ``n`` (videos audited),
        ``unmatched`` (videos of the split in no file), ``min_group``, ``resamples``,
        ``confidence``, ``traits``, ``null_hypothesis`` and ``columns``
        (column -> ``audit_column``'s result), plus ``summary`` (``summarize``) and
        ``warning`` (random weights, or None).

    Raises
    ------
    GroupsError, RunError, PredictionsError
        Before anything is written.
    """
    table = read_groups([Path(path) for path in options.groups])
    audited = read_audited_split(Path(options.run), options.split)
    columns, unmatched = audit_split(audited, table, options.split, options.resamples, options.min_group)
    result = {
        "run": options.run,
        "split": options.split,
        "groups_files": list(options.groups),
        "n": len(audited.video_ids) - unmatched,
        "unmatched": unmatched,
        "min_group": options.min_group,
        "resamples": options.resamples,
        "confidence": CONFIDENCE,
        "traits": list(audited.targets),
        "null_hypothesis": NULL_HYPOTHESIS,
        "columns": columns,
        "summary": summarize(columns),
        "warning": audited.warning,
    }
    out = Path(options.out) if options.out else Path(options.run) / AUDIT_FILE
    echo(format_audit(result))
    if audited.warning:
        echo(audited.warning)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(out, json.dumps(result, indent=1) + "\n")
    echo(f"audit saved to {out}")
    return result
