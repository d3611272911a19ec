"""Fitting heads from real caches: learning, refusing to claim learning, determinism, run files."""

import csv
import json
import struct

import keras
import numpy as np
import pytest
from typer.testing import CliRunner

from cache.labels import read_label_table, write_labels
from cache.reader import CacheReader
from cache.schema import TRAITS
from common.errors import OptionError
from train.cli import app
from train.config import HEADS, FitOptions
from train.fit import fit
from train.splits import SplitNameError
from train.synthetic import add_synthetic_set, write_synthetic_cache

FRAMES = 4
SMALL = dict(lr=1e-3, visual_units=32, visual_projection=16, audio_units=8, lstm_units=8, attention_units=4, verbose=0)
METRIC_FIELDS = {"mean_accuracy", "baseline_mean_accuracy", "mae", "r2", "pearson_r", "n", "traits"}


def quiet(_line):
    pass


@pytest.fixture(scope="module")
def learnable(tmp_path_factory):
    """Labels are a fixed function of the features."""
    return write_synthetic_cache(
        tmp_path_factory.mktemp("learnable") / "cache", {"train": 240, "validation": 40, "test": 80}, frames=FRAMES
    )


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A few videos with two stored frames per segment."""
    return write_synthetic_cache(
        tmp_path_factory.mktemp("tiny") / "cache",
        {"train": 24, "validation": 8, "test": 12},
        frames=FRAMES,
        frames_per_segment=2,
    )


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
    cache = write_synthetic_cache(
        tmp_path / "cache", {"train": 240, "validation": 40, "test": 200}, frames=FRAMES, labels="shuffled"
    )
    metrics = fit(FitOptions(cache=str(cache), out=str(tmp_path / "run"), head="seed", epochs=8, **SMALL), echo=quiet)
    assert metrics["train"]["mean_accuracy"] > metrics["train"]["baseline_mean_accuracy"], (
        "it can still memorise its training videos"
    )
    assert metrics["test"]["mean_accuracy"] < metrics["test"]["baseline_mean_accuracy"] + 0.003


def test_run_folder_holds_everything_the_issue_lists(learned_run, learnable):
    out, metrics = learned_run
    for name in (
        "options.json",
        "run.json",
        "model.keras",
        "history.csv",
        "metrics.json",
        "curves.png",
        "normalization.npz",
    ):
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
    assert {
        "loss",
        "mse",
        "mae",
        "cosine_similarity",
        "mean_accuracy",
        "val_loss",
        "val_mean_accuracy",
        "learning_rate",
    } <= set(history[0])
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
    assert {split: entry["n"] for split, entry in metrics.items()} == {"train": 24, "validation": 8, "test": 12}
    assert (tmp_path / head / "model.keras").exists()


def test_mixed_precision_trains_and_restores_the_policy(tiny, tmp_path):
    metrics = fit(
        FitOptions(cache=str(tiny), out=str(tmp_path / "mixed"), epochs=1, mixed_precision=True, **SMALL), echo=quiet
    )
    assert 0.0 < metrics["validation"]["mean_accuracy"] <= 1.0
    assert keras.mixed_precision.global_policy().name == "float32"
    model = keras.saving.load_model(tmp_path / "mixed" / "model.keras", safe_mode=True, compile=False)
    assert model.get_layer("visual_dense").compute_dtype == "float16"


def test_same_seed_same_metrics_and_weights_other_seed_other_metrics(tiny, tmp_path):
    runs, weights = {}, {}
    for name, seed in (("first", 5), ("again", 5), ("other", 6)):
        fit(
            FitOptions(cache=str(tiny), out=str(tmp_path / name), head="bilstm", epochs=2, seed=seed, **SMALL),
            echo=quiet,
        )
        runs[name] = (tmp_path / name / "metrics.json").read_text()
        weights[name] = keras.saving.load_model(
            tmp_path / name / "model.keras", compile=False, safe_mode=True
        ).get_weights()
    assert runs["first"] == runs["again"]
    for first, again in zip(weights["first"], weights["again"], strict=True):
        np.testing.assert_array_equal(first, again)
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
    metrics = fit(
        FitOptions(
            cache=str(cache), out=str(tmp_path / "run"), head="audio", epochs=1, validation_fraction=0.2, **SMALL
        ),
        echo=quiet,
    )
    holdout = json.loads((tmp_path / "run" / "holdout.json").read_text())
    assert len(holdout["video_ids"]) == 6 and metrics["holdout"]["n"] == 6 and metrics["train"]["n"] == 24
    assert (holdout["split"], holdout["holdout_seed"], holdout["source_delimiter"]) == ("train", 0, ".")
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert "held out" in info["selection"] and info["selection_split"] == "holdout"
    assert info["source_videos"] == {"train": 24, "holdout": 6}
    assert metrics["holdout"]["role"] == "selection"


def test_holdout_keeps_the_clips_of_a_source_video_together_and_reports_source_counts(tmp_path):
    cache = write_synthetic_cache(tmp_path / "cache", {"train": 30}, frames=FRAMES, clips_per_source=3)
    lines = []
    out = tmp_path / "run"
    metrics = fit(
        FitOptions(cache=str(cache), out=str(out), head="audio", epochs=1, holdout_seed=4, **SMALL), echo=lines.append
    )
    holdout = json.loads((out / "holdout.json").read_text())
    assert len(holdout["sources"]) == 2 and len(holdout["video_ids"]) == 6
    assert sorted(holdout["video_ids"]) == sorted(
        f"{source}.{clip:03d}.mp4" for source in holdout["sources"] for clip in range(3)
    )
    assert json.loads((out / "run.json").read_text())["source_videos"] == {"train": 8, "holdout": 2}
    assert (metrics["train"]["n"], metrics["holdout"]["n"]) == (24, 6)
    assert "training on split 'train': 24 videos from 8 source videos" in lines
    assert any(
        line.startswith("selecting on 'holdout': 6 videos from 2 source videos, held out of split 'train'")
        for line in lines
    )


def test_selecting_on_another_split_reports_every_split_under_its_own_name(tiny, tmp_path):
    lines = []
    out = tmp_path / "on-test"
    metrics = fit(
        FitOptions(cache=str(tiny), out=str(out), head="audio", epochs=3, validation_split="test", **SMALL),
        echo=lines.append,
    )
    assert {split: (entry["n"], entry["role"]) for split, entry in metrics.items()} == {
        "train": (24, "train"),
        "test": (12, "selection"),
        "validation": (8, "report"),
    }
    assert json.loads((out / "metrics.json").read_text()) == metrics
    info = json.loads((out / "run.json").read_text())
    assert (info["train_split"], info["selection_split"], info["report_splits"]) == ("train", "test", ["validation"])
    assert info["videos"] == {"train": 24, "test": 12, "validation": 8}
    with open(out / "history.csv", newline="") as handle:
        best = max(float(row["val_mean_accuracy"]) for row in csv.DictReader(handle))
    assert metrics["test"]["mean_accuracy"] == pytest.approx(best, abs=1e-4), "the test split selected the model"
    assert "selecting on split 'test': 12 videos from 12 source videos" in lines
    assert "reporting on split 'validation': 8 videos from 8 source videos" in lines
    table = "\n".join(lines)
    assert any(line.split()[:3] == ["test", "selection", "12"] for line in table.splitlines())


def test_a_split_name_the_cache_lacks_is_refused_before_anything_is_written(tiny, tmp_path):
    with pytest.raises(
        SplitNameError,
        match="validation_split 'validaton' names no split; the cache's splits are: test, train, validation",
    ):
        fit(
            FitOptions(cache=str(tiny), out=str(tmp_path / "typo"), epochs=1, validation_split="validaton", **SMALL),
            echo=quiet,
        )
    assert not (tmp_path / "typo").exists()


def test_useless_runs_are_warned_about(tmp_path):
    cache = write_synthetic_cache(tmp_path / "cache", {"train": 12, "validation": 6}, frames=FRAMES)
    write_labels(cache, {video_id: dict.fromkeys(TRAITS, 0.5) for video_id in read_label_table(cache)}, replace=True)
    lines = []
    fit(FitOptions(cache=str(cache), out=str(tmp_path / "run"), head="audio", epochs=1, **SMALL), echo=lines.append)
    warnings = [line for line in lines if line.startswith("warning:")]
    assert any("only 12 training videos" in line for line in warnings)
    assert any("train baseline 1.0000" in line for line in warnings)
    assert any("below the baseline" in line and "'validation'" in line for line in warnings)
    recorded = json.loads((tmp_path / "run" / "run.json").read_text())["warnings"]
    assert len(recorded) == 3 and set(recorded) <= set(warnings)


def test_an_existing_run_is_not_replaced_without_overwrite(learned_run, learnable):
    out, _ = learned_run
    with pytest.raises(OptionError, match="`overwrite`"):
        fit(FitOptions(cache=str(learnable), out=str(out), epochs=1, **SMALL), echo=quiet)
    assert (out / "model.keras").exists()


def test_the_existing_run_check_comes_before_the_cache_is_read(learned_run, tmp_path):
    out, _ = learned_run
    with pytest.raises(OptionError, match="`overwrite`"):
        fit(FitOptions(cache=str(tmp_path / "no-such-cache"), out=str(out), epochs=1, **SMALL), echo=quiet)


def test_splits_sharing_sources_or_file_contents_with_training_are_warned_about_with_counts(tmp_path):
    # validation and test: the first 3 videos are clips of training sources, the first 2 also copies of training files.
    cache = write_synthetic_cache(
        tmp_path / "cache", {"train": 24, "validation": 8, "test": 6}, frames=FRAMES, copied=2, shared_sources=3
    )
    lines = []
    fit(FitOptions(cache=str(cache), out=str(tmp_path / "run"), head="audio", epochs=1, **SMALL), echo=lines.append)
    leaks = list(dict.fromkeys(line for line in lines if "leak" in line))  # printed before training and in the summary
    source = "share a source video with the 'train' videos trained on (source = video id up to the first '.'; leak"
    content = "have the same file content as a 'train' video trained on (a copy under another name; leak"
    assert leaks == [
        f"warning: 3 of the 8 'validation' videos {source}: their scores will be optimistic)",
        f"warning: 2 of the 8 'validation' videos {content}: their scores will be optimistic)",
        f"warning: 3 of the 6 'test' videos {source}: their scores will be optimistic)",
        f"warning: 2 of the 6 'test' videos {content}: their scores will be optimistic)",
    ]
    assert set(leaks) <= set(json.loads((tmp_path / "run" / "run.json").read_text())["warnings"])
    trained = json.loads((tmp_path / "run" / "training_videos.json").read_text())
    assert trained["split"] == "train" and len(trained["videos"]) == 24
    assert CacheReader(cache).record(trained["videos"]["train-00000.mp4"]) is not None
    # Each video its own source: only the copies remain a leak.
    lines = []
    fit(
        FitOptions(cache=str(cache), out=str(tmp_path / "own"), head="audio", epochs=1, source_delimiter="", **SMALL),
        echo=lines.append,
    )
    assert list(dict.fromkeys(line.split(" videos ")[0] for line in lines if "leak" in line)) == [
        "warning: 2 of the 8 'validation'",
        "warning: 2 of the 6 'test'",
    ]


def test_interview_is_a_target_scored_per_target_beside_its_training_mean_baseline(tmp_path):
    from typer.testing import CliRunner

    from train.cli import app

    cache = write_synthetic_cache(
        tmp_path / "cache", {"train": 24, "validation": 8, "test": 8}, frames=FRAMES, interview=True
    )
    targets = ("openness", "interview")
    out = tmp_path / "runs" / "interview"
    metrics = fit(
        FitOptions(cache=str(cache), out=str(out), head="audio", epochs=1, targets=targets, **SMALL), echo=quiet
    )
    labels = read_label_table(cache)
    mean = {target: np.mean([labels[f"train-{index:05d}.mp4"][target] for index in range(24)]) for target in targets}
    for split in ("validation", "test"):
        assert list(metrics[split]["traits"]) == list(targets) == list(metrics[split]["traits_ccc"])
        truth = {target: [labels[f"{split}-{index:05d}.mp4"][target] for index in range(8)] for target in targets}
        for target in targets:
            expected = 1 - np.mean(np.abs(np.array(truth[target]) - mean[target]))
            assert metrics[split]["baseline_traits"][target] == pytest.approx(expected, abs=1e-6)
    assert keras.saving.load_model(out / "model.keras", compile=False).output.shape[-1] == 2
    with open(out / "predictions.csv") as handle:
        assert next(csv.reader(handle)) == ["split", "video_id", *targets, "openness_label", "interview_label"]
    runner = CliRunner()
    evaluated = runner.invoke(app, ["evaluate", str(out), "--split", "test", "--json"])
    assert evaluated.exit_code == 0 and json.loads(evaluated.stdout)["test"]["traits"] == metrics["test"]["traits"]
    fit(
        FitOptions(cache=str(cache), out=str(tmp_path / "runs" / "traits"), head="audio", epochs=1, **SMALL), echo=quiet
    )
    compared = runner.invoke(app, ["compare", str(tmp_path / "runs"), "--json", "--resamples", "200"])
    assert compared.exit_code == 0, compared.output
    rows = {row["run"]: row for row in json.loads(compared.stdout)}
    assert rows["interview"]["targets"] == "openness,interview" and rows["traits"]["targets"] == ",".join(TRAITS)
    assert "warning: the runs come from different targets (labels predicted)" in compared.stderr
    table = runner.invoke(app, ["compare", str(tmp_path / "runs"), "--resamples", "200"])
    assert "targets=openness,interview" in table.stdout
    typo = runner.invoke(app, ["fit", "--cache", str(cache), "--out", str(tmp_path / "typo"), "--targets", "intervew"])
    assert typo.exit_code == 2 and "error: --targets must be among openness" in typo.stderr
    assert not (tmp_path / "typo").exists()


def test_a_run_on_added_sets_takes_its_input_widths_from_them_and_records_them(tmp_path):
    cache = write_synthetic_cache(tmp_path / "cache", {"train": 24, "validation": 8}, frames=FRAMES)
    for name, dimension in (("face:vgg16", 512), ("audio:egemaps", 88)):
        add_synthetic_set(cache, name, dimension)
    out = tmp_path / "vgg"
    fit(
        FitOptions(cache=str(cache), out=str(out), features=("face:vgg16", "audio:egemaps"), epochs=1, **SMALL),
        echo=quiet,
    )
    model = keras.saving.load_model(out / "model.keras")
    assert {tensor.name: tensor.shape[-1] for tensor in model.inputs} == {"visual": 512, "audio": 88}
    with np.load(out / "normalization.npz") as normalization:
        assert normalization["visual_mean"].shape == (512,) and normalization["audio_mean"].shape == (88,)
    record = json.loads((out / "run.json").read_text())
    assert record["features"] == ["face:vgg16", "audio:egemaps"]
    assert {name: entry["identity"] for name, entry in record["feature_sets"].items()} == {
        "face:vgg16": "synthetic0",
        "audio:egemaps": "synthetic0",
    }
    # Side by side in one compare with a run on the default sets, each with its interval.
    fit(FitOptions(cache=str(cache), out=str(tmp_path / "defaults"), epochs=1, **SMALL), echo=quiet)
    result = CliRunner().invoke(app, ["compare", str(out), str(tmp_path / "defaults"), "--resamples", "100"])
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line for line in result.stdout.splitlines() if line.startswith(("vgg ", "defaults "))}
    assert " face:vgg16,audio:egemaps " in rows["vgg"] and " face:resnet50,audio:pyaa " in rows["defaults"]
    assert all(line.count("[") == 1 for line in rows.values())  # the 95% interval
