"""Fitting heads from real caches: learning, refusing to claim learning, determinism, run files."""

import csv
import json
import struct

import keras
import numpy as np
import pytest

from cache.reader import CacheReader
from train.config import HEADS, FitOptions
from train.fit import fit
from train.run import RunError
from train.synthetic import write_synthetic_cache

FRAMES = 4
SMALL = dict(lr=1e-3, visual_units=32, visual_projection=16, audio_units=8, lstm_units=8, attention_units=4, verbose=0)
METRIC_FIELDS = {"mean_accuracy", "baseline_mean_accuracy", "mae", "r2", "pearson_r", "n", "traits"}


def quiet(_line):
    pass


@pytest.fixture(scope="module")
def learnable(tmp_path_factory):
    """Labels are a fixed function of the features."""
    return write_synthetic_cache(tmp_path_factory.mktemp("learnable") / "cache", {"train": 240, "validation": 40, "test": 80}, frames=FRAMES)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A few videos with two stored frames per segment."""
    return write_synthetic_cache(tmp_path_factory.mktemp("tiny") / "cache", {"train": 24, "validation": 8, "test": 8}, frames=FRAMES, frames_per_segment=2)


@pytest.fixture(scope="module")
def learned_run(learnable, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "seed-head"
    metrics = fit(FitOptions(cache=str(learnable), out=str(out), head="seed", epochs=8, **SMALL), echo=quiet)
    return out, metrics


def test_seed_head_beats_the_mean_baseline_on_held_out_videos(learned_run):
    _, metrics = learned_run
    for split in ("validation", "test"):
        assert metrics[split]["mean_accuracy"] > metrics[split]["baseline_mean_accuracy"] + 0.01, split
        assert metrics[split]["pearson_r"] > 0.3, split


def test_shuffled_labels_do_not_beat_the_baseline(tmp_path):
    cache = write_synthetic_cache(tmp_path / "cache", {"train": 240, "validation": 40, "test": 200}, frames=FRAMES, labels="shuffled")
    metrics = fit(FitOptions(cache=str(cache), out=str(tmp_path / "run"), head="seed", epochs=8, **SMALL), echo=quiet)
    assert metrics["train"]["mean_accuracy"] > metrics["train"]["baseline_mean_accuracy"], "it can still memorise its training videos"
    assert metrics["test"]["mean_accuracy"] < metrics["test"]["baseline_mean_accuracy"] + 0.003


def test_run_folder_holds_everything_the_issue_lists(learned_run, learnable):
    out, metrics = learned_run
    for name in ("options.json", "run.json", "model.keras", "history.csv", "metrics.json", "curves.png", "normalization.npz"):
        assert (out / name).stat().st_size > 0, name
    assert json.loads((out / "metrics.json").read_text()) == metrics
    assert set(metrics) == {"train", "validation", "test"}
    for entry in metrics.values():
        assert METRIC_FIELDS <= set(entry)
        assert set(entry["traits"]) == {"openness", "conscientiousness", "extraversion", "agreeableness", "neuroticism"}
    assert metrics["test"]["n"] == 80
    info = json.loads((out / "run.json").read_text())
    assert info["config_hash"] == CacheReader(learnable).config_hash
    assert "--weights none" in info["warning"]
    options = json.loads((out / "options.json").read_text())
    assert options["head"] == "seed" and options["lr"] == 1e-3 and options["batch_size"] == 8
    with open(out / "history.csv", newline="") as handle:
        history = list(csv.DictReader(handle))
    assert 1 <= len(history) <= 8
    assert {"loss", "mse", "mae", "cosine_similarity", "mean_accuracy", "val_loss", "val_mean_accuracy", "learning_rate"} <= set(history[0])
    for row in history:
        assert float(row["mean_accuracy"]) == pytest.approx(1 - float(row["mae"]), abs=1e-5)
    width, height = struct.unpack(">II", (out / "curves.png").read_bytes()[16:24])
    assert width > 400 and height > 200


def test_reported_scores_are_those_of_the_best_validation_epoch(learned_run):
    out, metrics = learned_run
    with open(out / "history.csv", newline="") as handle:
        best = max(float(row["val_mean_accuracy"]) for row in csv.DictReader(handle))
    assert metrics["validation"]["mean_accuracy"] == pytest.approx(best, abs=1e-4)


@pytest.mark.parametrize("head", HEADS)
def test_every_head_trains_an_epoch(head, tiny, tmp_path):
    metrics = fit(FitOptions(cache=str(tiny), out=str(tmp_path / head), head=head, epochs=1, **SMALL), echo=quiet)
    assert {split: entry["n"] for split, entry in metrics.items()} == {"train": 24, "validation": 8, "test": 8}
    assert (tmp_path / head / "model.keras").exists()


def test_mixed_precision_trains_and_restores_the_policy(tiny, tmp_path):
    metrics = fit(FitOptions(cache=str(tiny), out=str(tmp_path / "mixed"), epochs=1, mixed_precision=True, **SMALL), echo=quiet)
    assert 0.0 < metrics["validation"]["mean_accuracy"] <= 1.0
    assert keras.mixed_precision.global_policy().name == "float32"
    model = keras.saving.load_model(tmp_path / "mixed" / "model.keras", safe_mode=True, compile=False)
    assert model.get_layer("visual_dense").compute_dtype == "float16"


def test_same_seed_same_metrics_other_seed_other_metrics(tiny, tmp_path):
    runs = {}
    for name, seed in (("first", 5), ("again", 5), ("other", 6)):
        fit(FitOptions(cache=str(tiny), out=str(tmp_path / name), head="bilstm", epochs=2, seed=seed, **SMALL), echo=quiet)
        runs[name] = (tmp_path / name / "metrics.json").read_text()
    assert runs["first"] == runs["again"]
    assert runs["first"] != runs["other"]


def test_several_seeds_report_mean_and_std_and_keep_the_best_model(tiny, tmp_path):
    out = tmp_path / "seeds"
    metrics = fit(FitOptions(cache=str(tiny), out=str(out), head="audio", epochs=2, seeds=(1, 2), **SMALL), echo=quiet)
    per_seed = {seed: json.loads((out / f"seed-{seed}" / "metrics.json").read_text()) for seed in (1, 2)}
    for split in ("validation", "test"):
        accuracies = [per_seed[seed][split]["mean_accuracy"] for seed in (1, 2)]
        assert metrics[split]["mean_accuracy"] == pytest.approx(np.mean(accuracies))
        assert metrics[split]["mean_accuracy_std"] == pytest.approx(np.std(accuracies))
    info = json.loads((out / "run.json").read_text())
    best = max((1, 2), key=lambda seed: per_seed[seed]["validation"]["mean_accuracy"])
    assert info["selected_seed"] == best
    assert (out / "model.keras").read_bytes() == (out / f"seed-{best}" / "model.keras").read_bytes()
    with open(out / "history.csv", newline="") as handle:
        assert {row["seed"] for row in csv.DictReader(handle)} == {"1", "2"}


def test_single_labelled_split_holds_out_validation_and_records_it(tmp_path):
    cache = write_synthetic_cache(tmp_path / "cache", {"train": 30}, frames=FRAMES)
    metrics = fit(FitOptions(cache=str(cache), out=str(tmp_path / "run"), head="audio", epochs=1, validation_fraction=0.2, **SMALL), echo=quiet)
    held_out = json.loads((tmp_path / "run" / "holdout.json").read_text())["video_ids"]
    assert len(held_out) == 6 and metrics["validation"]["n"] == 6 and metrics["train"]["n"] == 24
    assert "held out" in json.loads((tmp_path / "run" / "run.json").read_text())["validation"]


def test_an_existing_run_is_not_replaced_without_overwrite(learned_run, learnable):
    out, _ = learned_run
    with pytest.raises(RunError, match="--overwrite"):
        fit(FitOptions(cache=str(learnable), out=str(out), epochs=1, **SMALL), echo=quiet)
    assert (out / "model.keras").exists()
