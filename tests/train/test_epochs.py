"""train/epochs.py: one short line per epoch, each score beside its baseline."""

from __future__ import annotations

import json
import re

from typer.testing import CliRunner

from train.cli import app
from train.epochs import epoch_line
from train.synthetic import write_synthetic_cache

SHORT = 100  # characters: a line per epoch fits a terminal, where Keras' own took 260
EPOCH = re.compile(
    r"epoch (\d+)/3  loss \d\.\d{4} \(baseline \d\.\d{4}\)  val mean acc \d\.\d{4} \(baseline (\d\.\d{4})\)  \d+\.\d s"
)


def test_an_epoch_line_shows_each_score_beside_its_baseline():
    logs = {"loss": 0.01234, "val_mean_accuracy": 0.90123, "mae": 0.1, "val_loss": 0.02}
    baselines = {"loss": 0.02011, "val_mean_accuracy": 0.88341}
    assert (
        epoch_line(3, 40, logs, baselines, 2.06)
        == "epoch 3/40  loss 0.0123 (baseline 0.0201)  val mean acc 0.9012 (baseline 0.8834)  2.1 s"
    )


def test_fit_prints_one_short_line_per_epoch_and_no_keras_progress(tmp_path):
    cache = write_synthetic_cache(tmp_path / "cache", {"train": 16, "validation": 8}, frames=2)
    flags = ["--visual-units", "8", "--visual-projection", "4", "--audio-units", "4", "--lstm-units", "4"]
    result = CliRunner().invoke(
        app, ["fit", "--cache", str(cache), "--out", str(tmp_path / "run"), "--epochs", "3", *flags]
    )
    assert result.exit_code == 0, result.output
    epochs = [line for line in result.output.splitlines() if "epoch" in line.lower() and "/3" in line]
    assert [EPOCH.fullmatch(line)[1] for line in epochs] == ["1", "2", "3"], result.output
    assert all(len(line) <= SHORT for line in epochs)
    assert "Epoch 1/3" not in result.output and "step" not in result.output
    baseline = json.loads((tmp_path / "run" / "metrics.json").read_text())["validation"]["baseline_mean_accuracy"]
    assert {EPOCH.fullmatch(line)[2] for line in epochs} == {f"{baseline:.4f}"}
