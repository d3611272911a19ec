"""train.metrics against direct numpy computations."""

import numpy as np
import pytest

from cache.schema import TRAITS
from train.metrics import aggregate_seeds, format_table, score


@pytest.fixture
def scored():
    rng = np.random.default_rng(3)
    labels = rng.uniform(0.2, 0.8, (50, 5))
    predictions = np.clip(labels + rng.normal(0, 0.08, labels.shape), 0, 1)
    baseline = rng.uniform(0.4, 0.6, 5)
    return labels, predictions, baseline, score(labels, predictions, baseline)


def test_mean_and_per_trait_accuracy_match_numpy(scored):
    labels, predictions, baseline, result = scored
    errors = np.abs(labels - predictions)
    assert result["mean_accuracy"] == pytest.approx(1 - errors.mean())
    assert result["mae"] == pytest.approx(errors.mean())
    for column, trait in enumerate(TRAITS):
        assert result["traits"][trait] == pytest.approx(1 - errors[:, column].mean())
    assert result["n"] == 50


def test_baseline_is_the_score_of_predicting_the_given_mean(scored):
    labels, _, baseline, result = scored
    baseline_errors = np.abs(labels - baseline[None, :])
    assert result["baseline_mean_accuracy"] == pytest.approx(1 - baseline_errors.mean())
    assert result["baseline_mae"] == pytest.approx(baseline_errors.mean())
    for column, trait in enumerate(TRAITS):
        assert result["baseline_traits"][trait] == pytest.approx(1 - baseline_errors[:, column].mean())


def test_r2_and_pearson_are_per_trait_averages(scored):
    labels, predictions, _, result = scored
    r2 = [
        1 - ((labels[:, j] - predictions[:, j]) ** 2).sum() / ((labels[:, j] - labels[:, j].mean()) ** 2).sum()
        for j in range(5)
    ]
    pearson = [np.corrcoef(labels[:, j], predictions[:, j])[0, 1] for j in range(5)]
    assert result["r2"] == pytest.approx(np.mean(r2))
    assert result["pearson_r"] == pytest.approx(np.mean(pearson))


def test_training_mean_baseline_scores_zero_r2_on_training_data_and_has_no_correlation():
    labels = np.random.default_rng(0).uniform(0, 1, (30, 5))
    mean = labels.mean(axis=0)
    result = score(labels, np.tile(mean, (30, 1)), mean)
    assert result["mean_accuracy"] == pytest.approx(result["baseline_mean_accuracy"])
    assert result["r2"] == pytest.approx(0.0, abs=1e-12)
    assert result["pearson_r"] is None


def test_perfect_predictions_score_one():
    labels = np.random.default_rng(1).uniform(0, 1, (10, 5))
    result = score(labels, labels, labels.mean(axis=0))
    assert result["mean_accuracy"] == pytest.approx(1.0)
    assert result["r2"] == pytest.approx(1.0)
    assert result["pearson_r"] == pytest.approx(1.0)


def test_mismatched_or_empty_inputs_are_refused():
    with pytest.raises(ValueError, match="must both be"):
        score(np.zeros((4, 5)), np.zeros((4, 4)), np.zeros(5))
    with pytest.raises(ValueError, match="zero videos"):
        score(np.zeros((0, 5)), np.zeros((0, 5)), np.zeros(5))


def test_aggregate_seeds_reports_mean_and_population_std():
    labels = np.random.default_rng(2).uniform(0, 1, (20, 5))
    baseline = labels.mean(axis=0)
    runs = {
        seed: {"validation": score(labels, np.clip(labels + offset, 0, 1), baseline)}
        for seed, offset in ((1, 0.05), (2, 0.10), (3, 0.02))
    }
    combined = aggregate_seeds(runs)["validation"]
    accuracies = [runs[seed]["validation"]["mean_accuracy"] for seed in (1, 2, 3)]
    assert combined["mean_accuracy"] == pytest.approx(np.mean(accuracies))
    assert combined["mean_accuracy_std"] == pytest.approx(np.std(accuracies))
    assert combined["seeds"] == {"1": accuracies[0], "2": accuracies[1], "3": accuracies[2]}
    assert combined["baseline_mean_accuracy"] == runs[1]["validation"]["baseline_mean_accuracy"]


def test_table_shows_the_baseline_beside_every_figure(scored):
    _, _, _, result = scored
    table = format_table({"test": result})
    summary_row = next(line for line in table.splitlines() if line.startswith("test"))
    cells = summary_row.split()
    assert cells[2:4] == [f"{result['mean_accuracy']:.4f}", f"{result['baseline_mean_accuracy']:.4f}"]
    assert cells[4:6] == [f"{result['mae']:.4f}", f"{result['baseline_mae']:.4f}"]
    openness = next(line for line in table.splitlines() if line.startswith("openness")).split()
    assert openness[1:3] == [f"{result['traits']['openness']:.4f}", f"{result['baseline_traits']['openness']:.4f}"]


def test_table_names_the_role_of_each_split(scored):
    _, _, _, result = scored
    table = format_table(
        {
            "train": {**result, "role": "train"},
            "test": {**result, "role": "selection"},
            "validation": {**result, "role": "report"},
        }
    )
    lines = table.splitlines()
    assert lines[0].split()[:3] == ["split", "role", "n"]
    assert [line.split()[:2] for line in lines[1:4]] == [
        ["train", "train"],
        ["test", "selection"],
        ["validation", "report"],
    ]
    assert "role" not in format_table({"test": result}).splitlines()[0]


def test_per_trait_table_of_several_seeds_says_it_is_a_mean_over_seeds(scored):
    labels, predictions, baseline, result = scored
    combined = aggregate_seeds(
        {1: {"test": result}, 2: {"test": score(labels, np.clip(predictions + 0.01, 0, 1), baseline)}}
    )
    lines = format_table(combined).splitlines()
    title = lines.index("per-trait accuracy and concordance (ccc), mean over seeds 1, 2:")
    assert lines[title + 1].split()[0] == "trait"
    assert "mean over seeds" not in format_table({"test": result})


def test_ccc_per_trait_matches_lins_formula_and_known_values(scored):
    labels, predictions, baseline, result = scored
    for column, trait in enumerate(TRAITS):
        x, y = labels[:, column], predictions[:, column]
        covariance = np.cov(x, y, bias=True)  # Lin's population moments
        direct = 2 * covariance[0, 1] / (covariance[0, 0] + covariance[1, 1] + (x.mean() - y.mean()) ** 2)
        assert result["traits_ccc"][trait] == pytest.approx(direct)
        assert result["baseline_traits_ccc"][trait] == 0.0  # a constant agrees with nothing
        # Concordance never exceeds correlation, and penalises what correlation forgives.
        assert result["traits_ccc"][trait] <= np.corrcoef(x, y)[0, 1] + 1e-12
    assert result["ccc"] == pytest.approx(np.mean(list(result["traits_ccc"].values())))
    # Lin's example shape: a shift by 1 of 1, 2, 3 keeps r = 1 but gives ccc = (4/3) / (2/3 + 2/3 + 1) = 4/7.
    known = score(np.array([[1.0], [2.0], [3.0]]), np.array([[2.0], [3.0], [4.0]]), np.array([2.0]), targets=("x",))
    assert known["pearson_r"] == pytest.approx(1.0)
    assert known["ccc"] == pytest.approx(4 / 7)
    assert score(labels, labels, baseline)["ccc"] == pytest.approx(1.0)
    assert score(labels, 1 - labels, 1 - baseline)["traits_ccc"]["openness"] < 0


def test_ccc_is_in_both_tables_beside_its_baseline(scored):
    labels, predictions, baseline, result = scored
    table = format_table({"test": result})
    header = table.splitlines()[0].split()
    summary = next(line for line in table.splitlines() if line.startswith("test")).split()
    assert header[-2:] == ["ccc", "baseline"]
    assert summary[-2:] == [f"{result['ccc']:.4f}", f"{result['baseline_ccc']:.4f}"]
    openness = next(line for line in table.splitlines() if line.startswith("openness")).split()
    assert openness[3:] == [f"{result['traits_ccc']['openness']:.4f}", "0.0000"]
    combined = aggregate_seeds({1: {"test": result}, 2: {"test": score(labels, labels, baseline)}})["test"]
    assert combined["ccc"] == pytest.approx((result["ccc"] + 1.0) / 2)
    assert combined["traits_ccc"]["openness"] == pytest.approx((result["traits_ccc"]["openness"] + 1.0) / 2)
