"""``python -m train compare``: intervals, paired tests, seeds, caches and the plot, from runs made here."""

import json
import shutil

import numpy as np
import pytest
from scipy import stats
from typer.testing import CliRunner

from train.bootstrap import BOOTSTRAP_SEED
from train.cli import app
from train.compare import collect_runs
from train.config import FitOptions
from train.fit import fit
from train.predictions import read_predictions, trait_accuracies
from train.synthetic import synthetic_config, write_synthetic_cache

FRAMES = 4
RESAMPLES = 500  # quick on 2 cores; the figures' accuracy is bootstrap.py's business
TINY = {"visual_units": 8, "visual_projection": 4, "audio_units": 4, "lstm_units": 4, "lr": 1e-3, "verbose": 0}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """runs/: ``seed`` (one seed), ``audio`` (seeds 1, 2); elsewhere/: ``other``, on a cache with another config and other videos."""
    root = tmp_path_factory.mktemp("compare")
    cache = write_synthetic_cache(root / "cache", {"train": 48, "validation": 16, "test": 16}, frames=FRAMES)
    fit(
        FitOptions(cache=str(cache), out=str(root / "runs" / "seed"), head="seed", epochs=2, **TINY),
        echo=lambda line: None,
    )
    fit(
        FitOptions(cache=str(cache), out=str(root / "runs" / "audio"), head="audio", epochs=2, seeds=(1, 2), **TINY),
        echo=lambda line: None,
    )
    other_cache = write_synthetic_cache(
        root / "other-cache",
        {"train": 40, "validation": 12, "test": 12},
        frames=FRAMES,
        seed=5,
        config={**synthetic_config(FRAMES), "crop_size": 32},
    )
    fit(
        FitOptions(cache=str(other_cache), out=str(root / "elsewhere" / "other"), head="audio", epochs=1, **TINY),
        echo=lambda line: None,
    )
    return root


def compare_json(folder, *extra):
    result = CliRunner().invoke(app, ["compare", str(folder), "--json", "--resamples", str(RESAMPLES), *extra])
    assert result.exit_code == 0, result.output
    return {row["run"]: row for row in json.loads(result.stdout)}, result


def test_saved_predictions_reproduce_the_recorded_scores(runs):
    metrics = json.loads((runs / "runs" / "seed" / "metrics.json").read_text())
    predictions = read_predictions(runs / "runs" / "seed" / "predictions.csv")
    assert set(predictions) == {name for name, entry in metrics.items() if isinstance(entry, dict)}
    for name, split in predictions.items():
        assert len(split.video_ids) == metrics[name]["n"]
        assert trait_accuracies(split.labels, split.predictions).mean() == pytest.approx(
            metrics[name]["mean_accuracy"], abs=1e-6
        )


def test_json_carries_intervals_and_paired_p_values_per_split(runs):
    rows, _ = compare_json(runs / "runs")
    assert set(rows) == {"seed", "audio"}
    ranked = list(rows)
    best = rows[ranked[0]]
    for row in rows.values():
        assert row["selection_split"] == "validation" and row["cache"] == str((runs / "cache").resolve())
        for name in ("validation", "test"):
            entry = row["splits"][name]
            low, high = entry["ci95"]
            assert low < entry["mean_accuracy"] < high and entry["n"] == 16 and entry["baseline_mean_accuracy"] > 0
    assert best["splits"]["validation"]["mean_accuracy"] >= rows[ranked[1]]["splits"]["validation"]["mean_accuracy"]
    assert best["splits"]["test"]["p_value_vs_best"] is None
    assert 0 < rows[ranked[1]]["splits"]["test"]["p_value_vs_best"] <= 1
    audio = rows["audio"]["splits"]["test"]
    recorded = json.loads((runs / "runs" / "audio" / "metrics.json").read_text())["test"]
    assert (
        audio["mean_accuracy"] == recorded["mean_accuracy"]
        and audio["mean_accuracy_std"] == recorded["mean_accuracy_std"] > 0
    )
    assert rows["audio"]["seeds"] == [1, 2]
    assert compare_json(runs / "runs")[0] == rows  # seeded: the same figures every time


def _bootstrap_interval(scores: np.ndarray) -> list[float]:
    """scipy's percentile bootstrap of the mean per-video score, with compare's seed and resamples."""
    interval = stats.bootstrap(
        (scores,), np.mean, n_resamples=RESAMPLES, method="percentile", rng=np.random.default_rng(BOOTSTRAP_SEED)
    ).confidence_interval
    return [interval.low, interval.high]


def test_each_interval_is_scipys_bootstrap_of_the_per_video_scores(runs):
    rows, _ = compare_json(runs / "runs")
    for run, folders in (("seed", ["."]), ("audio", ["seed-1", "seed-2"])):
        predictions = [read_predictions(runs / "runs" / run / folder / "predictions.csv") for folder in folders]
        for name in ("validation", "test"):
            # A run of several seeds scores each video by the mean of its seeds' accuracies.
            per_video = np.mean(
                [trait_accuracies(split[name].labels, split[name].predictions).mean(axis=1) for split in predictions],
                axis=0,
            )
            assert rows[run]["splits"][name]["ci95"] == pytest.approx(_bootstrap_interval(per_video), abs=1e-12)


def test_the_table_shows_cache_n_interval_baseline_and_p(runs):
    result = CliRunner().invoke(app, ["compare", str(runs / "runs"), "--resamples", str(RESAMPLES)])
    assert result.exit_code == 0, result.output
    rows, _ = compare_json(runs / "runs")
    lines = result.stdout.splitlines()
    assert "ranked by mean accuracy on the split that selected each model (validation)" in lines[0]
    header = next(line for line in lines if "validation acc" in line)
    assert (
        header.split()[:6] == ["run", "head", "sets", "seeds", "cache", "n"]
        and "95% CI" in header
        and "baseline" in header
        and "p vs best" in header
    )
    best = next(iter(rows.values()))
    first = lines[lines.index(header) + 1]
    entry = best["splits"]["validation"]
    assert first.startswith(best["run"]) and "best" in first and f"cache@{best['config_hash'][:8]}" in first
    # Runs recorded before --features read the default sets, and say so.
    assert best["features"] == ["face:resnet50", "audio:pyaa"] and " face:resnet50,audio:pyaa " in first
    assert (
        f"[{entry['ci95'][0]:.4f}, {entry['ci95'][1]:.4f}]" in first
        and f"{entry['baseline_mean_accuracy']:.4f}" in first
    )
    assert any(line.startswith("run") and "test acc" in line for line in lines)
    assert "±" in next(line for line in lines if line.startswith("audio"))


def test_runs_from_other_caches_and_videos_are_flagged(runs):
    rows, result = compare_json(runs)
    assert {"runs/seed", "runs/audio", "elsewhere/other"} == set(rows)
    assert "different caches" in result.stderr and "different extraction configs" in result.stderr
    other = rows["elsewhere/other"]
    assert other["splits"]["test"]["n"] == 12 and other["cache"] != rows["runs/seed"]["cache"]
    best = next(iter(rows))
    # Whichever run is best, the runs scored on the other cache's videos get no paired test, and say so.
    unpaired = [run for run in rows if run != best and (run == "elsewhere/other") != (best == "elsewhere/other")]
    assert unpaired
    for run in unpaired:
        assert rows[run]["splits"]["test"]["p_value_vs_best"] is None
        assert f"no paired test for {run} on test: scored on other videos than the best run {best}" in result.stderr


def test_ranking_follows_the_split_that_selected_each_model(runs, tmp_path):
    shutil.copytree(runs / "runs" / "seed", tmp_path / "seed")
    shutil.copytree(runs / "runs" / "seed", tmp_path / "on-test")
    metrics_path, info_path = tmp_path / "on-test" / "metrics.json", tmp_path / "on-test" / "run.json"
    metrics = json.loads(metrics_path.read_text())
    for name, entry in metrics.items():
        if isinstance(entry, dict) and name in ("validation", "test"):
            entry["role"] = "selection" if name == "test" else "report"
    metrics_path.write_text(json.dumps(metrics))
    info_path.write_text(json.dumps({**json.loads(info_path.read_text()), "selection_split": "test"}))
    rows, result = compare_json(tmp_path)
    assert rows["on-test"]["selection_split"] == "test" and rows["seed"]["selection_split"] == "validation"
    assert "different selection splits" in result.stderr
    table = CliRunner().invoke(app, ["compare", str(tmp_path), "--resamples", str(RESAMPLES)])
    assert "(test, validation)" in table.stdout.splitlines()[0]


def test_a_run_without_predictions_keeps_its_row_without_intervals(runs, tmp_path):
    shutil.copytree(runs / "runs" / "seed", tmp_path / "old")
    (tmp_path / "old" / "predictions.csv").unlink()
    comparison = collect_runs(tmp_path, resamples=RESAMPLES)
    assert (
        comparison.rows[0]["splits"]["test"]["ci95"] is None
        and comparison.rows[0]["splits"]["test"]["mean_accuracy"] > 0
    )
    assert any("no intervals or tests for old" in line and "predates" in line for line in comparison.warnings)


def test_plot_draws_a_png(runs, tmp_path):
    plot = tmp_path / "compare.png"
    _, result = compare_json(runs / "runs", "--plot", str(plot))
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 10_000
    assert not list(tmp_path.glob(".*"))  # no temporary file left behind


def test_multi_seed_intervals_come_from_the_seed_average(runs):
    comparison = collect_runs(runs / "runs", resamples=RESAMPLES)
    accuracies = comparison.accuracies["audio", "test"]
    per_seed = [
        read_predictions(runs / "runs" / "audio" / f"seed-{seed}" / "predictions.csv")["test"] for seed in (1, 2)
    ]
    expected = np.mean([trait_accuracies(split.labels, split.predictions).mean(axis=1) for split in per_seed], axis=0)
    assert accuracies[-1] == pytest.approx(expected, abs=1e-9)


def test_several_folders_in_any_mix_rank_together_and_a_run_named_twice_counts_once(runs, tmp_path):
    named = [runs / "runs" / "seed", runs / "elsewhere", runs / "runs", runs / "runs" / "seed"]
    rows, result = compare_json(*map(str, named))
    assert sorted(row["run"] for row in json.loads(result.stdout)) == ["elsewhere/other", "runs/audio", "runs/seed"]
    alone, _ = compare_json(str(runs / "runs" / "audio"), str(runs / "elsewhere" / "other"))
    assert sorted(alone) == ["elsewhere/other", "runs/audio"]
    missing = CliRunner().invoke(app, ["compare", str(runs / "runs"), str(tmp_path / "nowhere")])
    assert missing.exit_code == 2 and "nowhere: no such folder" in missing.stderr
