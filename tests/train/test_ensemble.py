"""``python -m train ensemble``: averaged predictions, refusals, and the ensemble used as a run."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from common.errors import ExitCode
from train.cli import app
from train.config import FitOptions
from train.fit import fit
from train.metrics import score
from train.predictions import read_predictions
from train.run import open_folder
from train.synthetic import synthetic_config, write_synthetic_cache

FRAMES = 4
TINY = {"visual_units": 8, "visual_projection": 4, "audio_units": 4, "lstm_units": 4, "lr": 1e-3, "verbose": 0}


@pytest.fixture(scope="module")
def members(tmp_path_factory):
    """A cache and two runs on it on different sets: a seed head on the default sets, an audio head on audio:pyaa."""
    root = tmp_path_factory.mktemp("ensemble")
    cache = write_synthetic_cache(root / "cache", {"train": 48, "validation": 16, "test": 16}, frames=FRAMES)
    for head, features in (("seed", ("face:resnet50", "audio:pyaa")), ("audio", ("audio:pyaa",))):
        fit(
            FitOptions(cache=str(cache), out=str(root / "runs" / head), head=head, features=features, epochs=2, **TINY),
            echo=lambda line: None,
        )
    return root, cache


def build(root, *extra):
    out = root / "runs" / "ens"
    result = CliRunner().invoke(
        app,
        [
            "ensemble",
            str(root / "runs" / "seed"),
            str(root / "runs" / "audio"),
            "--out",
            str(out),
            "--overwrite",
            *extra,
        ],
    )
    assert result.exit_code == 0, result.output
    return out, result


def test_an_ensemble_averages_its_members_predictions_and_scores_them_beside_the_baseline(members):
    root, _ = members
    out, result = build(root)
    seed, audio = (read_predictions(root / "runs" / head / "predictions.csv")["test"] for head in ("seed", "audio"))
    averaged = read_predictions(out / "predictions.csv")["test"]
    assert list(averaged.video_ids) == list(seed.video_ids)
    assert averaged.predictions == pytest.approx(
        (seed.predictions + audio.predictions.astype(np.float64)) / 2, abs=1e-6
    )
    metrics = json.loads((out / "metrics.json").read_text())
    baseline = np.load(root / "runs" / "seed" / "normalization.npz")["label_mean"]
    expected = score(seed.labels, averaged.predictions, baseline)
    assert metrics["test"]["mean_accuracy"] == pytest.approx(expected["mean_accuracy"], abs=1e-7)
    assert metrics["test"]["baseline_mean_accuracy"] == pytest.approx(expected["baseline_mean_accuracy"], abs=1e-7)
    test_row = next(line for line in result.stdout.splitlines() if line.startswith("test "))
    assert (
        f"{metrics['test']['mean_accuracy']:.4f}" in test_row
        and f"{metrics['test']['baseline_mean_accuracy']:.4f}" in test_row
    )
    recorded = json.loads((out / "ensemble.json").read_text())
    assert recorded["weighting"] == "equal" and [member["weight"] for member in recorded["members"]] == [0.5, 0.5]


def test_validation_weighting_follows_each_members_gain_over_the_baseline(members, tmp_path):
    root, _ = members
    runner = CliRunner()
    for head, gain in (("seed", 0.03), ("audio", 0.01)):
        shutil.copytree(root / "runs" / head, tmp_path / head)
        metrics = json.loads((tmp_path / head / "metrics.json").read_text())
        metrics["validation"]["mean_accuracy"] = metrics["validation"]["baseline_mean_accuracy"] + gain
        (tmp_path / head / "metrics.json").write_text(json.dumps(metrics))
    arguments = ["ensemble", str(tmp_path / "seed"), str(tmp_path / "audio"), "--weighting", "validation"]
    result = runner.invoke(app, [*arguments, "--out", str(tmp_path / "ens")])
    assert result.exit_code == 0, result.output
    weights = [member["weight"] for member in json.loads((tmp_path / "ens" / "ensemble.json").read_text())["members"]]
    assert weights == pytest.approx([0.75, 0.25])
    members_predictions = [read_predictions(tmp_path / head / "predictions.csv") for head in ("seed", "audio")]
    for split, weighted in read_predictions(tmp_path / "ens" / "predictions.csv").items():
        seed, audio = (predictions[split] for predictions in members_predictions)
        assert list(weighted.video_ids) == list(seed.video_ids)
        assert weighted.predictions == pytest.approx(
            0.75 * seed.predictions.astype(np.float64) + 0.25 * audio.predictions.astype(np.float64), abs=1e-6
        )
    assert "optimistic" in result.stdout
    for head in ("seed", "audio"):
        metrics = json.loads((tmp_path / head / "metrics.json").read_text())
        metrics["validation"]["mean_accuracy"] = metrics["validation"]["baseline_mean_accuracy"] - 0.01
        (tmp_path / head / "metrics.json").write_text(json.dumps(metrics))
    refused = runner.invoke(app, [*arguments, "--out", str(tmp_path / "ens2")])
    assert (
        refused.exit_code == ExitCode.USAGE
        and "no member beats its training-mean baseline" in refused.stderr
        and "--weighting equal" in refused.stderr
    )


def test_members_from_caches_with_another_extraction_config_are_refused(members, tmp_path):
    root, _ = members
    other = write_synthetic_cache(
        tmp_path / "cache",
        {"train": 24, "validation": 8},
        frames=FRAMES,
        frames_per_segment=2,
        config={**synthetic_config(FRAMES, 2), "crop_size": 32},
    )
    fit(
        FitOptions(cache=str(other), out=str(tmp_path / "other"), head="audio", epochs=1, **TINY),
        echo=lambda line: None,
    )
    result = CliRunner().invoke(
        app, ["ensemble", str(root / "runs" / "seed"), str(tmp_path / "other"), "--out", str(tmp_path / "ens")]
    )
    assert result.exit_code == ExitCode.USAGE
    assert (
        "different extraction config" in result.stderr
        and "frames_per_segment: 1 -> 2" in result.stderr
        and "crop_size: None -> 32" in result.stderr
    )
    assert not (tmp_path / "ens").exists()


def test_bad_ensembles_are_clear_errors(members, tmp_path):
    root, _ = members
    runner = CliRunner()
    single = runner.invoke(app, ["ensemble", str(root / "runs" / "seed"), "--out", str(tmp_path / "e")])
    assert single.exit_code == ExitCode.USAGE and "at least two runs" in single.stderr
    twice = runner.invoke(
        app, ["ensemble", str(root / "runs" / "seed"), str(root / "runs" / "seed"), "--out", str(tmp_path / "e")]
    )
    assert twice.exit_code == ExitCode.USAGE and "a run is named twice" in twice.stderr
    weighting = runner.invoke(
        app,
        [
            "ensemble",
            str(root / "runs" / "seed"),
            str(root / "runs" / "audio"),
            "--out",
            str(tmp_path / "e"),
            "--weighting",
            "best",
        ],
    )
    assert weighting.exit_code == ExitCode.USAGE and "--weighting must be one of equal, validation" in weighting.stderr
    onto_a_run = runner.invoke(
        app,
        ["ensemble", str(root / "runs" / "seed"), str(root / "runs" / "audio"), "--out", str(root / "runs" / "seed")],
    )
    assert onto_a_run.exit_code == ExitCode.USAGE and "holds a run" in onto_a_run.stderr
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "options.json").write_text(json.dumps(FitOptions().to_dict()))
    (tmp_path / "old" / "run.json").write_text("{}")
    missing = runner.invoke(
        app, ["ensemble", str(root / "runs" / "seed"), str(tmp_path / "old"), "--out", str(tmp_path / "e")]
    )
    assert missing.exit_code == ExitCode.USAGE and "Traceback" not in missing.output
    assert not (tmp_path / "e").exists()


def test_evaluate_scores_an_ensemble_as_it_scored_itself(members):
    root, cache = members
    out, _ = build(root)
    result = CliRunner().invoke(app, ["evaluate", str(out), "--split", "test", "--json"])
    assert result.exit_code == 0, result.output
    recorded = json.loads((out / "metrics.json").read_text())["test"]
    scores = json.loads(result.stdout)["test"]
    assert scores["mean_accuracy"] == pytest.approx(recorded["mean_accuracy"], abs=1e-6)
    assert scores["baseline_mean_accuracy"] == pytest.approx(recorded["baseline_mean_accuracy"], abs=1e-7)
    table = CliRunner().invoke(app, ["evaluate", str(out), "--cache", str(cache), "--split", "test"])
    assert table.exit_code == 0 and "ensemble of" in table.stdout and "weight 0.500" in table.stdout


def test_compare_lists_an_ensemble_beside_its_members(members):
    root, _ = members
    out, _ = build(root)
    result = CliRunner().invoke(app, ["compare", str(root / "runs"), "--json", "--resamples", "300"])
    assert result.exit_code == 0, result.output
    rows = {row["run"]: row for row in json.loads(result.stdout)}
    assert set(rows) == {"seed", "audio", "ens"}
    assert (
        rows["ens"]["kind"] == "ensemble"
        and rows["ens"]["head"] == "ensemble"
        and rows["ens"]["options"] == {"weighting": "equal", "members": 2}
    )
    assert rows["ens"]["splits"]["test"]["ci95"] is not None and "train" not in rows["ens"]["splits"]
    assert all(
        row["splits"]["test"]["p_value_vs_best"] is not None
        for row in rows.values()
        if row is not next(iter(rows.values()))
    )


def test_a_member_trained_again_makes_the_ensemble_stale(members, tmp_path):
    root, cache = members
    fit(FitOptions(cache=str(cache), out=str(tmp_path / "a"), head="audio", epochs=1, **TINY), echo=lambda line: None)
    fit(FitOptions(cache=str(cache), out=str(tmp_path / "b"), head="visual", epochs=1, **TINY), echo=lambda line: None)
    assert (
        CliRunner()
        .invoke(app, ["ensemble", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "ens")])
        .exit_code
        == 0
    )
    assert len(open_folder(tmp_path / "ens").members) == 2
    info = json.loads((tmp_path / "a" / "run.json").read_text())
    (tmp_path / "a" / "run.json").write_text(json.dumps({**info, "created": "2030-01-01T00:00:00+00:00"}))
    result = CliRunner().invoke(app, ["evaluate", str(tmp_path / "ens"), "--split", "test"])
    assert result.exit_code == ExitCode.USAGE and "trained again after the ensemble was built" in result.stderr


def test_members_predicting_different_targets_are_refused(members, tmp_path):
    root, cache = members
    openness = tmp_path / "openness"
    fit(
        FitOptions(cache=str(cache), out=str(openness), head="audio", epochs=1, targets=("openness",), **TINY),
        echo=lambda line: None,
    )
    result = CliRunner().invoke(
        app, ["ensemble", str(root / "runs" / "audio"), str(openness), "--out", str(tmp_path / "ens")]
    )
    assert result.exit_code == ExitCode.USAGE
    assert "the members predict different targets" in result.stderr and f"{openness}: openness" in result.stderr
    assert not (tmp_path / "ens").exists()


def test_an_ensemble_joins_runs_on_different_sets_each_scored_on_its_own(members, tmp_path):
    root, cache = members
    # The member on fewer sets first: the ensemble reads every member's sets, each member its own.
    out = tmp_path / "late"
    runner = CliRunner()
    built = runner.invoke(
        app, ["ensemble", str(root / "runs" / "audio"), str(root / "runs" / "seed"), "--out", str(out)]
    )
    assert built.exit_code == 0, built.output
    assert open_folder(root / "runs" / "audio").features == ("audio:pyaa",)
    assert open_folder(out).features == ("audio:pyaa", "face:resnet50")
    evaluated = runner.invoke(app, ["evaluate", str(out), "--split", "test", "--json"])
    assert evaluated.exit_code == 0, evaluated.output
    recorded = json.loads((out / "metrics.json").read_text())["test"]["mean_accuracy"]
    assert json.loads(evaluated.stdout)["test"]["mean_accuracy"] == pytest.approx(recorded, abs=1e-6)
    compared = runner.invoke(app, ["compare", str(root / "runs"), str(out), "--json", "--resamples", "100"])
    assert compared.exit_code == 0, compared.output
    sets = {Path(row["folder"]).name: row["features"] for row in json.loads(compared.stdout)}
    assert sets["audio"] == ["audio:pyaa"] and sets["seed"] == ["face:resnet50", "audio:pyaa"]
