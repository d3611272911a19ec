"""Scores of trait predictions, always beside the predict-the-training-mean baseline.

The ChaLearn metric is mean accuracy = 1 - mean absolute error, averaged over the
five traits (or whatever targets a run was trained on). Pure numpy: importing this
module does not import Keras.
"""

from __future__ import annotations

import math

import numpy as np

from cache.schema import TRAITS


def _per_trait_r2(labels: np.ndarray, predictions: np.ndarray) -> np.ndarray:
    residual = ((labels - predictions) ** 2).sum(axis=0)
    total = ((labels - labels.mean(axis=0)) ** 2).sum(axis=0)
    defined = np.ptp(labels, axis=0) > 0  # constant labels leave nothing to explain
    return np.where(defined, 1.0 - residual / np.where(defined, total, 1.0), np.nan)


def _per_trait_pearson(labels: np.ndarray, predictions: np.ndarray) -> np.ndarray:
    label_centred = labels - labels.mean(axis=0)
    prediction_centred = predictions - predictions.mean(axis=0)
    covariance = (label_centred * prediction_centred).sum(axis=0)
    scale = np.sqrt((label_centred**2).sum(axis=0) * (prediction_centred**2).sum(axis=0))
    # A constant prediction (or constant labels) has no correlation at all; test
    # the values, not the centred sums, which keep rounding residue.
    defined = (np.ptp(labels, axis=0) > 0) & (np.ptp(predictions, axis=0) > 0)
    return np.where(defined, covariance / np.where(defined, scale, 1.0), np.nan)


def concordance(labels: np.ndarray, predictions: np.ndarray) -> np.ndarray:
    """Lin's (1989) concordance correlation coefficient per column.

    2 cov / (var_labels + var_predictions + (mean difference)^2), with population
    (1/N) moments as Lin defines it: 1 only when predictions equal the labels, so
    unlike Pearson's r it also penalises a shift or a change of scale.

    Parameters
    ----------
    labels, predictions : np.ndarray
        (N, k) true and predicted scores.

    Returns
    -------
    np.ndarray
        (k,) float64; NaN where both columns are constant and equal (nothing to agree on).
    """
    labels = np.asarray(labels, dtype=np.float64)
    predictions = np.asarray(predictions, dtype=np.float64)
    label_mean, prediction_mean = labels.mean(axis=0), predictions.mean(axis=0)
    covariance = ((labels - label_mean) * (predictions - prediction_mean)).mean(axis=0)
    # A constant column covaries with nothing; test the values, not the centred sums' rounding residue.
    covariance = np.where((np.ptp(labels, axis=0) > 0) & (np.ptp(predictions, axis=0) > 0), covariance, 0.0)
    denominator = labels.var(axis=0) + predictions.var(axis=0) + (label_mean - prediction_mean) ** 2
    defined = denominator > 0
    return np.where(defined, 2.0 * covariance / np.where(defined, denominator, 1.0), np.nan)


def _finite_or_none(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def _nan_mean(values: np.ndarray) -> float:
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if finite.size else math.nan


def score(labels: np.ndarray, predictions: np.ndarray, baseline: np.ndarray, targets: tuple[str, ...] = TRAITS) -> dict:
    """Score one split's predictions.

    Parameters
    ----------
    labels : np.ndarray
        (N, k) true scores, one column per target.
    predictions : np.ndarray
        (N, k) predicted scores.
    baseline : np.ndarray
        (k,) the training split's mean label: the prediction to beat.
    targets : tuple of str
        The k targets' names (default the five traits).

    Returns
    -------
    dict
        ``mean_accuracy`` (1 - MAE over all videos and targets),
        ``baseline_mean_accuracy``, ``mae``, ``baseline_mae``, ``r2`` and
        ``baseline_r2`` (per-target coefficient of determination, averaged),
        ``pearson_r`` (per-target correlation, averaged; None when undefined),
        ``ccc`` and ``baseline_ccc`` (per-target concordance, averaged; the
        baseline's is 0: a constant does not vary with the labels), ``n``
        (videos), ``traits`` and ``baseline_traits`` ({target: accuracy}),
        ``traits_ccc`` and ``baseline_traits_ccc`` ({target: concordance or None}).
    """
    labels = np.asarray(labels, dtype=np.float64)
    predictions = np.asarray(predictions, dtype=np.float64)
    baseline_predictions = np.broadcast_to(np.asarray(baseline, dtype=np.float64), labels.shape)
    if labels.shape != predictions.shape or labels.ndim != 2 or labels.shape[1] != len(targets):
        raise ValueError(
            f"labels {labels.shape} and predictions {predictions.shape} must both be (N, {len(targets)}): one column per target"
        )
    if labels.shape[0] == 0:
        raise ValueError("cannot score zero videos")
    trait_errors = np.abs(labels - predictions).mean(axis=0)
    baseline_trait_errors = np.abs(labels - baseline_predictions).mean(axis=0)
    trait_ccc = concordance(labels, predictions)
    baseline_trait_ccc = concordance(labels, baseline_predictions)
    return {
        "mean_accuracy": float(1.0 - trait_errors.mean()),
        "baseline_mean_accuracy": float(1.0 - baseline_trait_errors.mean()),
        "mae": float(trait_errors.mean()),
        "baseline_mae": float(baseline_trait_errors.mean()),
        "r2": _finite_or_none(_nan_mean(_per_trait_r2(labels, predictions))),
        "baseline_r2": _finite_or_none(_nan_mean(_per_trait_r2(labels, baseline_predictions))),
        "pearson_r": _finite_or_none(_nan_mean(_per_trait_pearson(labels, predictions))),
        "ccc": _finite_or_none(_nan_mean(trait_ccc)),
        "baseline_ccc": _finite_or_none(_nan_mean(baseline_trait_ccc)),
        "n": int(labels.shape[0]),
        "traits": {trait: float(1.0 - error) for trait, error in zip(targets, trait_errors)},
        "baseline_traits": {trait: float(1.0 - error) for trait, error in zip(targets, baseline_trait_errors)},
        "traits_ccc": {trait: _finite_or_none(value) for trait, value in zip(targets, trait_ccc)},
        "baseline_traits_ccc": {trait: _finite_or_none(value) for trait, value in zip(targets, baseline_trait_ccc)},
    }


def baseline_scores(labels: np.ndarray, label_mean: np.ndarray) -> dict[str, float]:
    """What predicting the training mean scores, under the names of the per-epoch metrics.

    Parameters
    ----------
    labels : np.ndarray
        (N, k) true scores, one column per target.
    label_mean : np.ndarray
        (k,) the training split's mean label.

    Returns
    -------
    dict
        ``loss`` (mean squared error), ``mae`` and ``mean_accuracy`` (1 - mae).
    """
    errors = labels - label_mean
    mae = np.mean(np.abs(errors))
    return {"loss": float(np.mean(errors**2)), "mae": float(mae), "mean_accuracy": float(1 - mae)}


# Fields averaged over seeds; the rest (n, baselines) are equal for every seed.
SEED_VARYING_FIELDS = ("mean_accuracy", "mae", "r2", "pearson_r", "ccc")


def _mean_and_std(values: list[float | None]) -> tuple[float | None, float | None]:
    finite = [value for value in values if value is not None]
    if not finite:
        return None, None
    return float(np.mean(finite)), float(np.std(finite))


def aggregate_seeds(per_seed: dict[int, dict[str, dict]]) -> dict[str, dict]:
    """Combine the per-split scores of repeated runs.

    Parameters
    ----------
    per_seed : dict
        seed -> split -> the dict ``score`` returns.

    Returns
    -------
    dict
        split -> the same fields, seed-varying ones averaged, plus ``<field>_std``
        (population standard deviation over seeds) and ``seeds``
        ({seed: mean_accuracy}).
    """
    seeds = list(per_seed)
    combined: dict[str, dict] = {}
    for split in per_seed[seeds[0]]:
        runs = [per_seed[seed][split] for seed in seeds]
        entry = dict(runs[0])
        for field in SEED_VARYING_FIELDS:
            entry[field], entry[f"{field}_std"] = _mean_and_std([run[field] for run in runs])
        entry["traits"] = {trait: float(np.mean([run["traits"][trait] for run in runs])) for trait in entry["traits"]}
        entry["traits_ccc"] = {
            trait: _mean_and_std([run["traits_ccc"][trait] for run in runs])[0] for trait in entry["traits_ccc"]
        }
        entry["seeds"] = {str(seed): run["mean_accuracy"] for seed, run in zip(seeds, runs)}
        combined[split] = entry
    return combined


def format_number(value: float | None, std: float | None = None, missing: str = "n/a") -> str:
    """A score to four decimals, with ``±std`` when given; ``missing`` for None."""
    if value is None:
        return missing
    return f"{value:.4f}" if std is None else f"{value:.4f}±{std:.4f}"


def format_table(metrics: dict[str, dict]) -> str:
    """Terminal tables of per-split and per-trait scores, baseline beside each figure.

    Parameters
    ----------
    metrics : dict
        split -> the dict ``score`` (or ``aggregate_seeds``) returns, with an
        optional ``role`` (``train``, ``selection``, ``report``).

    Returns
    -------
    str
        Two aligned tables; a ``role`` column when the entries have roles, and
        a title over the per-trait table when they are means over seeds. The
        baseline of Pearson's r is "n/a": a constant prediction has no correlation.
        The per-trait table lists the targets the runs were trained on (the five
        traits, or others such as ``interview``), each split's accuracy and
        concordance (ccc) beside their baselines. Entries written before ccc
        existed show "n/a" there.
    """
    roles = any("role" in entry for entry in metrics.values())
    header = (
        "split",
        *(("role",) if roles else ()),
        "n",
        "mean acc",
        "baseline",
        "mae",
        "baseline",
        "r2",
        "baseline",
        "pearson r",
        "baseline",
        "ccc",
        "baseline",
    )
    rows = [header]
    for split, entry in metrics.items():
        rows.append(
            (
                split,
                *((entry.get("role", "-"),) if roles else ()),
                str(entry["n"]),
                format_number(entry["mean_accuracy"], entry.get("mean_accuracy_std")),
                format_number(entry["baseline_mean_accuracy"]),
                format_number(entry["mae"], entry.get("mae_std")),
                format_number(entry["baseline_mae"]),
                format_number(entry["r2"], entry.get("r2_std")),
                format_number(entry["baseline_r2"]),
                format_number(entry["pearson_r"], entry.get("pearson_r_std")),
                "n/a",
                format_number(entry.get("ccc"), entry.get("ccc_std")),
                format_number(entry.get("baseline_ccc")),
            )
        )
    columns = ("acc", "baseline", "ccc", "baseline")
    trait_rows = [("trait", *(f"{split} {column}" for split in metrics for column in columns))]
    for trait in dict.fromkeys(trait for entry in metrics.values() for trait in entry["traits"]):
        cells = [trait]
        for entry in metrics.values():
            cells += [
                format_number(entry["traits"].get(trait)),
                format_number(entry["baseline_traits"].get(trait)),
                format_number(entry.get("traits_ccc", {}).get(trait)),
                format_number(entry.get("baseline_traits_ccc", {}).get(trait)),
            ]
        trait_rows.append(tuple(cells))
    seeds = next((entry["seeds"] for entry in metrics.values() if "seeds" in entry), None)
    title = f"per-trait accuracy and concordance (ccc), mean over seeds {', '.join(seeds)}:\n" if seeds else ""
    return aligned(rows, left=(0, 1) if roles else (0,)) + "\n\n" + title + aligned(trait_rows)


def aligned(rows: list[tuple[str, ...]], left: tuple[int, ...] = (0,)) -> str:
    """Rows of cells as text columns: columns in ``left`` left-aligned, numbers right."""
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [
            cell.ljust(width) if column in left else cell.rjust(width)
            for column, (cell, width) in enumerate(zip(row, widths))
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)
