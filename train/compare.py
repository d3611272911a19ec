"""One table of every run (and ensemble) under a folder, best selection score first.

Every mean accuracy comes with a bootstrap 95% interval over videos, a paired
bootstrap p-value against the best run on the same videos, and the
predict-the-training-mean baseline; runs of several seeds also show mean ± std
over seeds. The intervals and tests need each run's ``predictions.csv``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cache.schema import OPTIONS_FILE
from common.files import replace_atomically
from train.audit import MIN_GROUP_VIDEOS, audit_split, read_audited_split, summarize
from train.bootstrap import BOOTSTRAP_RESAMPLES, mean_intervals, paired_p_value
from train.groups import GroupsError, GroupTable
from train.metrics import aligned, format_number
from train.predictions import PREDICTIONS_FILE, PredictionsError, read_predictions, trait_accuracies
from train.run import ENSEMBLE_FILE, METRICS_FILE, RunError, RunFolder, open_folder

PLOT_RUNS = 8  # runs drawn in --plot, best first: more makes the trait groups unreadable


@dataclass(frozen=True)
class Comparison:
    """What ``collect_runs`` found.

    Attributes
    ----------
    rows : list of dict
        One JSON-able row per finished run, best first (see ``collect_runs``).
    unfinished : list of str
        Run folders without metrics.json.
    warnings : list of str
        Why some figures are missing or not comparable.
    accuracies : dict
        (run, split) -> (6, N) per-video trait accuracies and their mean (for plots).
    """

    rows: list[dict]
    unfinished: list[str]
    warnings: list[str]
    accuracies: dict[tuple[str, str], np.ndarray]


def _run_folders(root: Path) -> list[Path]:
    """Run and ensemble folders under root, except the per-seed runs inside a run."""
    markers = list(root.rglob(OPTIONS_FILE)) + list(root.rglob(ENSEMBLE_FILE))
    folders = sorted({path.parent for path in markers})
    runs = set(folders)
    return [folder for folder in folders if not any(parent in runs for parent in folder.parents)]


def _split_entries(metrics: dict) -> dict[str, dict]:
    """The per-split score dicts of a metrics.json (other top-level keys describe the run)."""
    return {name: entry for name, entry in metrics.items() if isinstance(entry, dict) and "mean_accuracy" in entry}


def _video_accuracies(folders: list[Path]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """split -> (video ids, (k + 1, N) accuracies: k targets and their mean), averaged over seeds.

    ``folders`` are a run's ``prediction_folders``. A run of several seeds reports the
    mean over seeds, so its per-video accuracy is the mean of the seeds' per-video
    accuracies: the two agree exactly.
    """
    per_folder = [read_predictions(path / PREDICTIONS_FILE) for path in folders]
    result = {}
    for name, first in per_folder[0].items():
        stacked = [trait_accuracies(first.labels, first.predictions)]
        for other in per_folder[1:]:
            aligned_other = other[name].aligned_to(first.video_ids)
            stacked.append(trait_accuracies(aligned_other.labels, aligned_other.predictions))
        traits = np.mean(stacked, axis=0).T
        result[name] = (first.video_ids, np.vstack([traits, traits.mean(axis=0)]))
    return result


def _describe(opened: RunFolder, root: Path) -> dict:
    """The row of one finished run or ensemble, before intervals and tests."""
    folder = opened.path
    splits = _split_entries(opened.metrics)
    selection = opened.selection_split
    reported = [name for name in splits if name not in opened.training_splits]
    reported.sort(key=lambda name: name != selection)  # the selection split first, then the cache's order
    return {
        "run": str(folder.relative_to(root)) if folder != root else folder.name,
        "kind": opened.kind,
        "head": opened.head,
        "features": list(opened.features),
        "seeds": opened.seeds,
        "options": opened.shown_options,
        "cache": opened.cache,
        "config_hash": opened.config_hash,
        "selection_split": selection,
        "targets": ",".join(next(iter(splits.values()), {}).get("traits", {})),
        "date": opened.created,
        "folder": str(folder.resolve()),
        "random_weights": opened.random_weights,
        "splits": {
            name: {
                "n": splits[name].get("n"),
                "mean_accuracy": splits[name]["mean_accuracy"],
                "mean_accuracy_std": splits[name].get("mean_accuracy_std"),
                "baseline_mean_accuracy": splits[name]["baseline_mean_accuracy"],
                "ci95": None,
                "p_value_vs_best": None,
                "traits": splits[name]["traits"],
                "baseline_traits": splits[name]["baseline_traits"],
            }
            for name in reported
        },
    }


def _selection_score(row: dict) -> float | None:
    entry = row["splits"].get(row["selection_split"])
    return None if entry is None else entry["mean_accuracy"]


def _different(rows: list[dict], key: str) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for row in rows:
        groups.setdefault(row[key], []).append(row["run"])
    return groups if len(groups) > 1 else {}


def _consistency_warnings(rows: list[dict]) -> list[str]:
    """Warnings when the runs compared were not made alike."""
    warnings = []
    for key, what in (
        ("cache", "caches"),
        ("config_hash", "extraction configs"),
        ("selection_split", "selection splits"),
        ("targets", "targets (labels predicted)"),
    ):
        groups = _different(rows, key)
        if groups:
            listed = "; ".join(f"{value or '?'}: {', '.join(runs)}" for value, runs in groups.items())
            warnings.append(
                f"warning: the runs come from different {what} ({listed}); their scores are not measured alike"
            )
    return warnings


def _folders_to_compare(roots: list[Path]) -> tuple[list[Path], Path]:
    """Every run and ensemble folder under any of ``roots``, each once, and the folder their names are relative to.

    Raises
    ------
    RunError
        A root that is not a folder.
    """
    for root in roots:
        if not root.is_dir():
            raise RunError(f"{root}: no such folder; name run, ensemble or sweep folders (default runs)")
    # One folder named twice, or named inside another one named, is one run.
    folders = list(dict.fromkeys(folder.resolve() for root in roots for folder in _run_folders(root)))
    names_from = Path(os.path.commonpath([root.resolve() for root in roots]))
    return folders, names_from


def collect_runs(roots: Path | list[Path], resamples: int = BOOTSTRAP_RESAMPLES) -> Comparison:
    """Summaries of the finished runs under ``roots``, best selection score first.

    Parameters
    ----------
    roots : Path or list of Path
        Runs folders, sweep folders, single runs or ensembles, in any mix; a run
        found under several of them counts once.
    resamples : int
        Bootstrap resamples for intervals and p-values.

    Returns
    -------
    Comparison
        ``rows``: per run ``run`` (path relative to the folder holding every root,
        its own name when that is the run itself), ``kind`` (run or
        ensemble), ``head``, ``features`` (its feature sets), ``seeds``, ``options`` (non-default options),
        ``cache``, ``config_hash``, ``selection_split`` (the split that selected
        the model; ``validation`` for runs that predate the field), ``targets``
        (the labels predicted, comma-separated), ``date``,
        ``random_weights``, and ``splits``: per reported split (every labelled
        split but the training one) ``n``, ``mean_accuracy`` (mean over seeds),
        ``mean_accuracy_std`` (over seeds, or None), ``baseline_mean_accuracy``,
        ``ci95`` ([low, high] bootstrap over videos, or None), ``p_value_vs_best``
        (paired bootstrap against the best run on the same videos; None for the
        best run itself and where no paired test is possible), ``traits`` and
        ``baseline_traits``. The best run is the one with the highest mean
        accuracy on its own selection split.
    """
    roots = [roots] if isinstance(roots, Path) else roots
    folders, names_from = _folders_to_compare([Path(root) for root in roots])
    rows, unfinished, warnings = [], [], []
    accuracies: dict[tuple[str, str], np.ndarray] = {}
    videos: dict[tuple[str, str], np.ndarray] = {}
    for folder in folders:
        if not (folder / METRICS_FILE).exists():
            unfinished.append(str(folder))
            continue
        opened = open_folder(folder, members=False)
        row = _describe(opened, names_from)
        rows.append(row)
        try:
            per_split = _video_accuracies(opened.prediction_folders)
        except PredictionsError as error:
            warnings.append(f"warning: no intervals or tests for {row['run']}: {error}")
            continue
        for name, entry in row["splits"].items():
            if name in per_split:
                videos[row["run"], name], accuracies[row["run"], name] = per_split[name]
                interval = mean_intervals(per_split[name][1][-1:], resamples)
                entry["ci95"] = None if interval is None else [float(value) for value in interval[0]]
    rows.sort(key=lambda row: (_selection_score(row) is None, -(_selection_score(row) or 0.0)))
    if rows and _selection_score(rows[0]) is not None:
        warnings += _paired_tests(rows, videos, accuracies, resamples)
    warnings = _consistency_warnings(rows) + warnings
    return Comparison(rows, unfinished, warnings, accuracies)


def _paired_tests(rows: list[dict], videos: dict, accuracies: dict, resamples: int) -> list[str]:
    """Fill ``p_value_vs_best`` of every row against rows[0]; warnings where impossible."""
    best, warnings = rows[0], []
    for row in rows[1:]:
        for name, entry in row["splits"].items():
            key, best_key = (row["run"], name), (best["run"], name)
            if key not in videos or best_key not in videos:
                continue
            if set(videos[key]) != set(videos[best_key]) or len(videos[key]) != len(videos[best_key]):
                warnings.append(
                    f"warning: no paired test for {row['run']} on {name}: scored on other videos than the best run {best['run']} (n {len(videos[key])} vs {len(videos[best_key])})"
                )
                continue
            order = {video_id: index for index, video_id in enumerate(videos[key])}
            rows_in_best_order = np.array([order[video_id] for video_id in videos[best_key]])
            entry["p_value_vs_best"] = paired_p_value(
                accuracies[key][-1, rows_in_best_order], accuracies[best_key][-1], resamples
            )
    return warnings


def _option_text(value) -> str:
    """An option's value as the command line writes it (lists comma-separated: targets=openness,interview)."""
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)


def _short_cache(row: dict) -> str:
    name = Path(row["cache"]).name if row["cache"] else "?"
    return f"{name}@{row['config_hash'][:8]}" if row["config_hash"] else name


def _p_cell(row: dict, best: dict, name: str) -> str:
    if row is best:
        return "best"
    value = row["splits"][name]["p_value_vs_best"]
    return "-" if value is None else f"{value:.4f}"


def format_runs(comparison: Comparison) -> str:
    """The compare tables, one per reported split, runs in the same (ranked) order.

    Columns: head, sets, seeds, cache, n, mean accuracy (± std over seeds), bootstrap 95% CI, baseline and
    p vs best; the first table also lists each run's non-default options. Runs whose
    embeddings came from random weights are starred.
    """
    rows = comparison.rows
    selections = sorted({row["selection_split"] for row in rows})
    lines = [
        f"ranked by mean accuracy on the split that selected each model ({', '.join(selections)}); acc ± std over seeds; 95% CI and p vs best: bootstrap over videos, paired for p"
    ]
    names = list(dict.fromkeys(name for row in rows for name in row["splits"]))
    for position, name in enumerate(names):
        header = (
            "run",
            "head",
            "sets",
            "seeds",
            "cache",
            "n",
            f"{name} acc",
            "95% CI",
            "baseline",
            "p vs best",
            *(("other options",) if position == 0 else ()),
        )
        table = [header]
        for row in rows:
            entry = row["splits"].get(name)
            cells = [
                row["run"] + (" *" if row["random_weights"] else ""),
                row["head"],
                ",".join(row["features"]),
                ",".join(map(str, row["seeds"])) or "-",
                _short_cache(row),
            ]
            if entry is None:
                cells += ["-"] * 5
            else:
                interval = entry["ci95"]
                cells += [
                    str(entry["n"]),
                    format_number(entry["mean_accuracy"], entry["mean_accuracy_std"]),
                    "-" if interval is None else f"[{interval[0]:.4f}, {interval[1]:.4f}]",
                    format_number(entry["baseline_mean_accuracy"]),
                    _p_cell(row, rows[0], name),
                ]
            if position == 0:
                cells.append(" ".join(f"{key}={_option_text(value)}" for key, value in row["options"].items()) or "-")
            table.append(tuple(cells))
        lines += ["", aligned(table, left=(0, 1, 2, 3, 4, 10))]
    if any(row["random_weights"] for row in rows):
        lines += ["", "* embeddings from --weights none (a random ResNet50): scores say nothing about real faces"]
    return "\n".join(lines)


def runs_json(comparison: Comparison) -> str:
    """The compare rows as a JSON array."""
    return json.dumps(comparison.rows, indent=1)


def plot_runs(comparison: Comparison, path: Path, resamples: int = BOOTSTRAP_RESAMPLES) -> None:
    """Per-trait mean accuracy with 95% intervals, beside each run's baseline.

    One panel per reported split; within a panel, one group per trait (and the
    mean), one point per run (the PLOT_RUNS best), its training-mean baseline a
    grey tick beside it.
    """
    import matplotlib

    matplotlib.use("Agg")  # files only: never needs a display
    from matplotlib import pyplot

    rows = comparison.rows[:PLOT_RUNS]
    names = list(dict.fromkeys(name for row in rows for name in row["splits"]))
    targets = list(
        dict.fromkeys(trait for row in rows for entry in row["splits"].values() for trait in entry["traits"])
    )
    labels = [*targets, "mean"]
    figure, axes = pyplot.subplots(len(names), 1, figsize=(11, 3.6 * len(names)), squeeze=False)
    width = 0.8 / max(len(rows), 1)
    for axis, name in zip(axes[:, 0], names):
        for index, row in enumerate(rows):
            entry = row["splits"].get(name)
            if entry is None:
                continue
            positions = np.arange(len(labels)) - 0.4 + width * (index + 0.5)
            values = np.array([entry["traits"].get(trait, np.nan) for trait in targets] + [entry["mean_accuracy"]])
            baseline = np.array(
                [entry["baseline_traits"].get(trait, np.nan) for trait in targets] + [entry["baseline_mean_accuracy"]]
            )
            accuracies = comparison.accuracies.get((row["run"], name))
            # Error bars only where the run's targets are the plot's (runs trained on other targets have none).
            same_targets = list(entry["traits"]) == targets
            intervals = None if accuracies is None or not same_targets else mean_intervals(accuracies, resamples)
            errors = None if intervals is None else np.abs(intervals.T - values)
            axis.errorbar(positions, values, yerr=errors, fmt="o", capsize=3, label=row["run"])
            axis.scatter(
                positions,
                baseline,
                marker="_",
                s=200,
                color="grey",
                label="training-mean baseline" if index == 0 else None,
            )
        axis.set_xticks(np.arange(len(labels)), labels)
        axis.set_ylabel(f"{name} accuracy (1 - MAE)")
        axis.grid(alpha=0.3, axis="y")
        axis.legend(fontsize="small", loc="best")
    figure.suptitle("mean accuracy per trait with bootstrap 95% intervals over videos")
    figure.tight_layout()
    try:
        with replace_atomically(Path(path)) as temporary:
            figure.savefig(temporary, dpi=100, format=Path(path).suffix.lstrip(".").lower() or "png")
    finally:
        pyplot.close(figure)


def add_groups(
    comparison: Comparison,
    table: GroupTable,
    resamples: int = BOOTSTRAP_RESAMPLES,
    min_group: int = MIN_GROUP_VIDEOS,
) -> None:
    """Give every reported split of every row ``groups``: its audit's worst group and largest gap.

    ``groups`` holds ``train.audit.summarize``'s fields plus ``n`` (videos in a group)
    and ``unmatched``; None where the table names no video of the split or a column has
    one group there (a warning says which). Groups under ``min_group`` videos are left out.

    Raises
    ------
    GroupsError
        The table names no video of any split of any run.
    """
    matched = False
    for row in comparison.rows:
        for name, entry in row["splits"].items():
            entry["groups"] = None
            try:
                audited = read_audited_split(Path(row["folder"]), name)
            except (PredictionsError, RunError):
                continue  # collect_runs already warned: no per-video predictions
            try:
                columns, unmatched = audit_split(audited, table, name, resamples, min_group)
            except GroupsError as error:  # no video of this split, or one group: other splits may still match
                matched = matched or table.unmatched(audited.video_ids) < len(audited.video_ids)
                comparison.warnings.append(f"warning: no group figures for {row['run']} on {name}: {error}")
                continue
            matched = True
            entry["groups"] = {"n": len(audited.video_ids) - unmatched, "unmatched": unmatched, **summarize(columns)}
    if comparison.rows and not matched:
        raise GroupsError(
            f"{table.described}: matches no video of any split of the runs compared; pass the groups file of their videos"
        )


def format_groups(comparison: Comparison) -> str:
    """Per run and reported split: the worst group's accuracy and the largest gap with its p-value."""
    table = [("run", "split", "n", "worst group", "acc", "baseline", "largest gap", "column", "p")]
    for row in comparison.rows:
        for name, entry in row["splits"].items():
            groups = entry.get("groups")
            if groups is None:
                continue
            table.append(
                (
                    row["run"],
                    name,
                    str(groups["n"]),
                    groups["worst_group"] or "-",
                    format_number(groups["worst_accuracy"], missing="-"),
                    format_number(groups["worst_baseline_accuracy"], missing="-"),
                    format_number(groups["largest_gap"], missing="-"),
                    groups["gap_column"] or "-",
                    format_number(groups["gap_p_value"], missing="-"),
                )
            )
    return (
        f"groups: the worst group of at least {MIN_GROUP_VIDEOS} videos beside its training-mean baseline,"
        " and the largest gap between groups (bootstrap p; `python -m train audit` for all figures)\n"
        + aligned(table, left=(0, 1, 3, 7))
    )
