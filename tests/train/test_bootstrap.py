"""Bootstrap intervals and paired p-values over videos: seeded, and in line with textbook tests."""

import numpy as np
import pytest
from scipy import stats

from train.bootstrap import mean_intervals, paired_p_value

RESAMPLES = 2000  # enough for two-decimal agreement with the t-test, quick on 2 cores


def test_intervals_are_deterministic_and_match_the_normal_approximation():
    values = np.random.default_rng(0).random((2, 400))
    intervals = mean_intervals(values, RESAMPLES)
    assert intervals.shape == (2, 2)
    assert np.array_equal(intervals, mean_intervals(values, RESAMPLES))
    half_width = 1.96 * values.std(axis=1, ddof=1) / np.sqrt(values.shape[1])
    assert intervals[:, 0] == pytest.approx(values.mean(axis=1) - half_width, abs=0.004)
    assert intervals[:, 1] == pytest.approx(values.mean(axis=1) + half_width, abs=0.004)
    assert mean_intervals(values[:, :1], RESAMPLES) is None


@pytest.mark.parametrize("shift", [0.0, 0.01, 0.03])
def test_paired_p_value_agrees_with_the_paired_t_test(shift):
    rng = np.random.default_rng(1)
    reference = rng.random(500)
    scores = reference + shift + 0.1 * rng.normal(size=500)
    p_value = paired_p_value(scores, reference, RESAMPLES)
    assert p_value == pytest.approx(stats.ttest_rel(scores, reference).pvalue, abs=0.03)
    assert p_value == paired_p_value(scores, reference, RESAMPLES)


def test_paired_p_value_edges():
    same = np.linspace(0.8, 0.9, 10)
    assert paired_p_value(same, same, RESAMPLES) == 1.0
    assert paired_p_value(same + 0.01, same, RESAMPLES) == pytest.approx(1 / (RESAMPLES + 1))
    assert paired_p_value(same[:1], same[:1], RESAMPLES) is None
    with pytest.raises(ValueError, match="must both be"):
        paired_p_value(same, same[:5], RESAMPLES)
