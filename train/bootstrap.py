"""Bootstrap confidence intervals and paired tests over videos, seeded and deterministic.

Both resample videos (rows), the unit the ChaLearn metric averages over, with
``scipy.stats.bootstrap``. Every call draws from a generator seeded with
BOOTSTRAP_SEED, so the same predictions always give the same figures.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

BOOTSTRAP_SEED = 20161  # any fixed value: figures must not change from one compare to the next
BOOTSTRAP_RESAMPLES = 9999  # scipy's default; p-values resolve down to 1e-4
BOOTSTRAP_BATCH = 500  # resamples per block: bounds memory to ~25 MB at 6 x 2000 videos
CONFIDENCE = 0.95


def _resample_means(values: np.ndarray, resamples: int):
    """scipy's bootstrap of the mean along the last axis (percentile intervals)."""
    return stats.bootstrap(
        (values,),
        np.mean,
        axis=-1,
        vectorized=True,
        n_resamples=resamples,
        batch=BOOTSTRAP_BATCH,
        confidence_level=CONFIDENCE,
        method="percentile",
        rng=np.random.default_rng(BOOTSTRAP_SEED),
    )


def mean_intervals(values: np.ndarray, resamples: int = BOOTSTRAP_RESAMPLES) -> np.ndarray | None:
    """95% percentile-bootstrap intervals of means over videos.

    Parameters
    ----------
    values : np.ndarray
        (K, N): K quantities (e.g. five trait accuracies and their mean) for N videos.
    resamples : int
        Bootstrap resamples of the N videos; each resample is shared by the K rows.

    Returns
    -------
    np.ndarray or None
        (K, 2) [low, high] per row; None with fewer than two videos (nothing to resample).
    """
    values = np.asarray(values, dtype=np.float64)
    if values.shape[-1] < 2:
        return None
    interval = _resample_means(values, resamples).confidence_interval
    return np.stack([np.atleast_1d(interval.low), np.atleast_1d(interval.high)], axis=-1)


def paired_p_value(scores: np.ndarray, reference: np.ndarray, resamples: int = BOOTSTRAP_RESAMPLES) -> float | None:
    """Two-sided paired bootstrap p-value of a difference in mean score.

    The per-video differences are resampled; the bootstrap distribution of their
    mean, shifted to mean zero, stands for "no difference", and the p-value is the
    share of it at least as far from zero as the observed mean difference, counted
    as (hits + 1) / (resamples + 1) so that it is never exactly zero.

    Parameters
    ----------
    scores, reference : np.ndarray
        (N,) per-video scores of two models on the same N videos, same order.
    resamples : int

    Returns
    -------
    float or None
        1.0 when the two agree on every video; None with fewer than two videos.
    """
    if np.shape(scores) != np.shape(reference) or np.ndim(scores) != 1:
        raise ValueError(f"scores {np.shape(scores)} and reference {np.shape(reference)} must both be (N,)")
    differences = np.asarray(scores, dtype=np.float64) - np.asarray(reference, dtype=np.float64)
    if len(differences) < 2:
        return None
    observed = differences.mean()
    distribution = _resample_means(differences, resamples).bootstrap_distribution
    hits = np.count_nonzero(np.abs(distribution - observed) >= abs(observed))
    return float((hits + 1) / (len(distribution) + 1))
