"""``python -m train sweep``: grids over fit options, one run per configuration, resumed after a real kill."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

import train.sweep
from common.errors import OptionError
from common.options import leaf_fields
from train.cli import app
from train.config import FitOptions
from train.run import METRICS_FILE
from train.sweep import (
    JOINED_AXES,
    SweepOptions,
    configurations,
    fixed_options,
    folder_name,
    grid_axes,
    is_finished,
    not_axes,
    parse_grid,
    plan,
    set_by_sweep,
)
from train.synthetic import write_synthetic_cache

FRAMES = 4
TINY = [
    "--grid",
    "visual-units=8",
    "--grid",
    "visual-projection=4",
    "--grid",
    "audio-units=4",
    "--grid",
    "lstm-units=4",
]
KILL_TIMEOUT = 240  # s: the first configuration must finish within this, or the test fails instead of hanging
RUN_TIMEOUT = 400  # s: a whole sweep of three tiny configurations, TensorFlow start-up included
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return write_synthetic_cache(
        tmp_path_factory.mktemp("sweep") / "cache", {"train": 40, "validation": 12, "test": 12}, frames=FRAMES
    )


def test_grid_values_are_typed_and_checked_against_the_fit_options():
    grid = dict(parse_grid(["head=seed,bilstm", "lr=1e-3,1e-4", "batch-size=4", "mixed_precision=false"]))
    assert grid == {"head": ("seed", "bilstm"), "lr": (1e-3, 1e-4), "batch_size": (4,), "mixed_precision": (False,)}
    with pytest.raises(OptionError, match="no fit option of that name; grid axes are: .*head.*lr"):
        parse_grid(["learning_rate=1e-3"])
    with pytest.raises(OptionError, match="'fast' is not a float"):
        parse_grid(["lr=fast"])
    with pytest.raises(OptionError, match="cache: not a grid axis; every configuration reads the sweep's cache"):
        parse_grid(["cache=a,b"])
    with pytest.raises(OptionError, match="repeated"):
        parse_grid(["lr=1e-3,0.001"])
    with pytest.raises(OptionError, match="grid configuration head=transformer: head must be one of"):
        SweepOptions(out="out", cache="c", grid=parse_grid(["head=seed,transformer"]))


def test_every_fit_option_but_the_sweeps_own_is_a_grid_axis():
    defaults, excluded = FitOptions(), not_axes()
    for name, (_, kind) in leaf_fields(FitOptions).items():
        value = getattr(defaults, name)
        text = str(value).lower() if kind is bool else repr(value) if kind is float else str(value)
        text = "+".join(value) if name in JOINED_AXES else text
        if name in excluded:
            with pytest.raises(OptionError, match=f"grid {name}: not a grid axis"):
                parse_grid([f"{name}={text}"])
            continue
        grid = parse_grid([f"{name.replace('_', '-')}={text}"])
        assert grid == ((name, (value,)),), name
        (only,) = configurations(SweepOptions(out="out", cache="c", grid=grid))
        assert getattr(SweepOptions(out="out", cache="c", grid=grid).fit_options(only), name) == value


def test_a_grid_ranges_over_feature_sets_joined_by_plus():
    (axis,) = parse_grid(["features=face:resnet50+audio:pyaa,face:vgg16+audio:egemaps"])
    assert axis == ("features", (("face:resnet50", "audio:pyaa"), ("face:vgg16", "audio:egemaps")))
    options = SweepOptions(out="out", cache="c", grid=(axis,))
    fits = [options.fit_options(values) for values in configurations(options)]
    assert sorted(fit.features for fit in fits) == sorted(axis[1])
    assert sorted(Path(fit.out).name for fit in fits) == [
        "features=face:resnet50+audio:pyaa",
        "features=face:vgg16+audio:egemaps",
    ]
    with pytest.raises(OptionError, match="head audio needs an audio set and face:vgg16 has none"):
        SweepOptions(out="out", cache="c", grid=parse_grid(["head=audio", "features=face:vgg16"]))


def test_configurations_cover_the_grid_and_a_random_search_draws_the_same_ones_again():
    grid = parse_grid(["head=seed,bilstm,attention", "lr=1e-3,1e-4", "dropout=0.1,0.3"])
    every = configurations(SweepOptions(out="out", cache="c", grid=grid))
    assert len(every) == 12 and len({folder_name(values) for values in every}) == 12
    drawn = configurations(SweepOptions(out="out", cache="c", grid=grid, search="random", trials=5, search_seed=3))
    assert len(drawn) == 5 and all(values in every for values in drawn)
    assert drawn == configurations(
        SweepOptions(out="out", cache="c", grid=grid, search="random", trials=5, search_seed=3)
    )
    assert drawn != configurations(
        SweepOptions(out="out", cache="c", grid=grid, search="random", trials=5, search_seed=4)
    )
    swapped = parse_grid(["dropout=0.1,0.3", "lr=1e-3,1e-4", "head=seed,bilstm,attention"])
    assert sorted(map(folder_name, configurations(SweepOptions(out="out", cache="c", grid=swapped)))) == sorted(
        map(folder_name, every)
    )
    assert folder_name({"lr": 1e-4, "head": "seed"}) == "head=seed,lr=0.0001"


def test_bad_grids_are_usage_errors(cache, tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["sweep", "--cache", str(cache), "--out", str(tmp_path / "s"), "--grid", "lrate=1e-3"])
    assert result.exit_code == 2 and "grid axes are:" in result.stderr and "batch_size" in result.stderr
    result = runner.invoke(
        app, ["sweep", "--cache", str(cache), "--out", str(tmp_path / "s"), "--grid", "lr=1e-3", "--trials", "3"]
    )
    assert result.exit_code == 2 and "error: --trials must stay 0 unless search is random, got 3" in result.stderr
    result = runner.invoke(app, ["sweep", "--cache", str(cache), "--out", str(tmp_path / "s"), "--jobs", "0"])
    assert result.exit_code == 2 and "error: --jobs must be at least 1, got 0" in result.stderr
    result = runner.invoke(app, ["sweep", "--out", str(tmp_path / "s"), "--grid", "head=seed,transformer"])
    assert (
        result.exit_code == 2 and "error: --grid configuration head=transformer: head must be one of" in result.stderr
    )
    assert not (tmp_path / "s").exists()


def test_a_sweep_writes_one_run_per_configuration_and_a_rerun_touches_nothing(cache, tmp_path):
    runner = CliRunner()
    out = tmp_path / "s"
    arguments = [
        "sweep",
        "--cache",
        str(cache),
        "--out",
        str(out),
        "--grid",
        "head=seed,audio",
        "--grid",
        "epochs=1",
        *TINY,
        "--resamples",
        "200",
    ]
    result = runner.invoke(app, arguments)
    assert result.exit_code == 0, result.output
    folders = sorted(path for path in out.iterdir() if path.is_dir())
    assert [folder.name.split(",")[0] for folder in folders] == ["head=audio", "head=seed"]
    for folder in folders:
        assert is_finished(folder)
        options = json.loads((folder / "options.json").read_text())
        assert options["out"] == str(folder) and options["epochs"] == 1 and options["visual_units"] == 8
        assert {"model.keras", "normalization.npz", "history.csv", "predictions.csv", "curves.png"} <= {
            path.name for path in folder.iterdir()
        }
    assert "ranked by mean accuracy" in result.stdout and "p vs best" in result.stdout and "baseline" in result.stdout
    before = {path: path.stat().st_mtime_ns for folder in folders for path in folder.rglob("*")}
    again = runner.invoke(app, arguments)
    assert again.exit_code == 0, again.output
    assert "2 finished before, 0 to fit" in again.stdout
    assert {path: path.stat().st_mtime_ns for folder in folders for path in folder.rglob("*")} == before
    other = runner.invoke(app, [*arguments, "--seeds", "1,2"])
    assert other.exit_code == 2 and "finished run with other options" in other.stderr and "seeds" in other.stderr


def _sweep_command(cache, out, jobs):
    return [
        sys.executable,
        "-m",
        "train",
        "sweep",
        "--cache",
        str(cache),
        "--out",
        str(out),
        "--grid",
        "head=seed,audio,visual",
        "--grid",
        "epochs=3",
        *TINY,
        "--jobs",
        str(jobs),
        "--resamples",
        "200",
    ]


def test_a_killed_sweep_redoes_only_unfinished_configurations(cache, tmp_path):
    out = tmp_path / "killed"
    environment = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}
    process = subprocess.Popen(
        _sweep_command(cache, out, 1),
        cwd=REPO,
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + KILL_TIMEOUT
        while time.monotonic() < deadline and process.poll() is None:
            folders = [path for path in out.glob("*") if path.is_dir()] if out.exists() else []
            finished = [folder for folder in folders if is_finished(folder)]
            half_written = [folder for folder in folders if not is_finished(folder)]
            if finished and half_written:
                break
            time.sleep(0.05)
        else:
            pytest.fail(
                f"the sweep neither finished one configuration and started another within {KILL_TIMEOUT} s nor kept running"
            )
        os.killpg(process.pid, signal.SIGKILL)  # the sweep and anything it started, mid-fit
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
    finished = {
        folder: {path: path.read_bytes() for path in folder.rglob("*") if path.is_file()}
        for folder in out.glob("*")
        if folder.is_dir() and is_finished(folder)
    }
    stamps = {path: path.stat().st_mtime_ns for files in finished.values() for path in files}
    half_written = [folder for folder in out.glob("*") if folder.is_dir() and not is_finished(folder)]
    assert finished and half_written and not any((folder / METRICS_FILE).exists() for folder in half_written)

    rerun = subprocess.run(
        _sweep_command(cache, out, 2), cwd=REPO, env=environment, capture_output=True, text=True, timeout=RUN_TIMEOUT
    )
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert f"{len(finished)} finished before, {3 - len(finished)} to fit with 2 job(s)" in rerun.stdout
    folders = sorted(folder for folder in out.glob("*") if folder.is_dir())
    assert len(folders) == 3 and all(is_finished(folder) for folder in folders)
    for folder, files in finished.items():
        assert {path: path.read_bytes() for path in folder.rglob("*") if path.is_file()} == files
    assert {path: path.stat().st_mtime_ns for path in stamps} == stamps
    for folder in half_written:
        assert json.loads((folder / "metrics.json").read_text())["test"]["baseline_mean_accuracy"] > 0
    assert sum(line.startswith("[") for line in rerun.stdout.splitlines()) == 3 - len(
        finished
    )  # a line per configuration fitted now


TINY_FIXED = ["--visual-units", "8", "--visual-projection", "4", "--audio-units", "4", "--lstm-units", "4"]


def test_fit_flags_are_fixed_values_beside_the_grid_and_older_options_files_still_resume(cache, tmp_path):
    runner = CliRunner()
    out = tmp_path / "s"
    arguments = ["sweep", "--cache", str(cache), "--out", str(out), "--epochs", "1", "--grid", "head=seed,audio"]
    arguments += [*TINY_FIXED, "--resamples", "200"]
    both = runner.invoke(app, [*arguments, "--grid", "epochs=1,2"])
    assert both.exit_code == 2
    assert "error: --grid epochs: also given as the fixed value --epochs 1; give it once" in both.stderr
    bad = runner.invoke(app, [*arguments[:5], "--epochs", "0"])
    assert bad.exit_code == 2 and "error: --epochs must be at least 1, got 0" in bad.stderr
    assert not out.exists()
    result = runner.invoke(app, arguments)
    assert result.exit_code == 0, result.output
    folders = sorted(path for path in out.iterdir() if path.is_dir())
    assert [folder.name for folder in folders] == ["head=audio", "head=seed"]
    for folder in folders:
        options = json.loads((folder / "options.json").read_text())
        assert (options["epochs"], options["visual_units"], options["lstm_units"]) == (1, 8, 4)
    assert json.loads((out / "sweep.json").read_text())["fixed"]["epochs"] == 1
    # A run saved by an older release lacks the options added since: they count as their defaults.
    saved = json.loads((folders[1] / "options.json").read_text())
    del saved["min_lr"], saved["source_delimiter"]
    (folders[1] / "options.json").write_text(json.dumps(saved))
    before = {path: path.stat().st_mtime_ns for folder in folders for path in folder.rglob("*")}
    again = runner.invoke(app, arguments)
    assert again.exit_code == 0, again.output
    assert "2 finished before, 0 to fit" in again.stdout
    assert {path: path.stat().st_mtime_ns for folder in folders for path in folder.rglob("*")} == before


def test_a_rerun_keeps_the_seeds_an_interrupted_configuration_had_finished(cache, tmp_path):
    runner = CliRunner()
    out = tmp_path / "s"
    arguments = ["sweep", "--cache", str(cache), "--out", str(out), "--seeds", "1,2", "--epochs", "1"]
    arguments += ["--grid", "head=audio", *TINY_FIXED, "--resamples", "200"]
    assert runner.invoke(app, arguments).exit_code == 0
    run = out / "head=audio"
    # What a kill while seed 2 was being scored leaves: seed 1 finished, seed 2 and the run not.
    (run / METRICS_FILE).unlink()
    (run / "seed-2" / METRICS_FILE).unlink()
    (run / "seed-2" / "predictions.csv").unlink()
    finished = {path: (path.read_bytes(), path.stat().st_mtime_ns) for path in (run / "seed-1").rglob("*")}
    refitted = (run / "seed-2" / "history.csv").stat().st_mtime_ns
    again = runner.invoke(app, arguments)
    assert again.exit_code == 0, again.output
    assert "0 finished before, 1 to fit" in again.stdout
    assert {path: (path.read_bytes(), path.stat().st_mtime_ns) for path in (run / "seed-1").rglob("*")} == finished
    assert (run / "seed-2" / "history.csv").stat().st_mtime_ns > refitted
    assert is_finished(run / "seed-2") and is_finished(run)
    seed_one = json.loads((run / "seed-1" / METRICS_FILE).read_text())
    combined = json.loads((run / METRICS_FILE).read_text())
    assert combined["validation"]["seeds"]["1"] == seed_one["validation"]["mean_accuracy"]
    assert set(combined["validation"]["seeds"]) == {"1", "2"}


def test_an_added_fit_option_is_placed_by_its_role_and_runs_saved_before_it_still_resume(
    cache, tmp_path, monkeypatch, newer_fit_options
):
    out = tmp_path / "s"
    arguments = ["sweep", "--cache", str(cache), "--out", str(out), "--epochs", "1", "--grid", "head=audio"]
    assert CliRunner().invoke(app, [*arguments, *TINY_FIXED, "--resamples", "200"]).exit_code == 0
    axes, fixed_before, set_before = list(grid_axes()), fixed_options(), set_by_sweep()
    monkeypatch.setattr(train.sweep, "FitOptions", newer_fit_options)  # the release that adds the options
    assert list(grid_axes()) == [*axes, "label_smoothing"]
    assert fixed_options() == [*fixed_before, "label_smoothing"]
    assert set_by_sweep() == {**set_before, "progress_file": set_before["verbose"]}
    fixed = (("epochs", 1), ("visual_units", 8), ("visual_projection", 4), ("audio_units", 4), ("lstm_units", 4))
    sweep = SweepOptions(out=str(out), cache=str(cache), grid=parse_grid(["head=audio"]), fixed=fixed)
    finished, to_do = plan(sweep)
    assert [type(options) for options in finished] == [newer_fit_options] and not to_do
    assert finished[0].out == str(out / "head=audio")
    smoothed = dataclasses.replace(sweep, fixed=(*fixed, ("label_smoothing", 0.1)))
    with pytest.raises(OptionError, match=r"other options than this sweep's \(label_smoothing: 0.0 -> 0.1\)"):
        plan(smoothed)
