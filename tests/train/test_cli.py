"""``python -m train`` through typer's CliRunner: fit, compare, evaluate, and refusals."""

import json
import re

import pytest
from typer.testing import CliRunner

from common.errors import ExitCode, flag_name
from common.options import leaf_fields
from train.cli import app
from train.config import FitOptions
from train.synthetic import synthetic_config, write_synthetic_cache

FRAMES = 4
SMALL = [
    "--lr",
    "1e-3",
    "--visual-units",
    "16",
    "--visual-projection",
    "8",
    "--audio-units",
    "4",
    "--lstm-units",
    "4",
    "--verbose",
    "0",
]


@pytest.fixture(scope="module")
def runner():
    return CliRunner()


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, runner):
    """A cache and two finished runs: ``seed`` (one seed) and ``audio`` (seeds 1, 2)."""
    root = tmp_path_factory.mktemp("cli")
    cache = write_synthetic_cache(root / "cache", {"train": 60, "validation": 16, "test": 16}, frames=FRAMES)
    results = {}
    for name, extra in (
        ("seed", ["--head", "seed", "--epochs", "3"]),
        ("audio", ["--head", "audio", "--epochs", "2", "--seeds", "1,2"]),
    ):
        results[name] = runner.invoke(
            app, ["fit", "--cache", str(cache), "--out", str(root / "runs" / name), *extra, *SMALL]
        )
    return root, cache, results


def test_fit_prints_scores_beside_the_baseline_and_the_weights_warning(workspace):
    root, _, results = workspace
    result = results["seed"]
    assert result.exit_code == 0, result.output
    metrics = json.loads((root / "runs" / "seed" / "metrics.json").read_text())
    test_row = next(line for line in result.stdout.splitlines() if line.startswith("test "))
    assert (
        f"{metrics['test']['mean_accuracy']:.4f}" in test_row
        and f"{metrics['test']['baseline_mean_accuracy']:.4f}" in test_row
    )
    assert "--weights none" in result.stdout
    assert results["audio"].exit_code == 0, results["audio"].output
    assert "mean ± std over seeds 1, 2" in results["audio"].stdout


def test_options_are_saved_as_the_flags_gave_them(workspace):
    root, cache, _ = workspace
    options = json.loads((root / "runs" / "audio" / "options.json").read_text())
    assert (
        options["head"] == "audio" and options["seeds"] == [1, 2] and options["lr"] == 1e-3 and options["epochs"] == 2
    )
    assert options["cache"] == str(cache) and options["visual_units"] == 16 and options["batch_size"] == 8


def test_compare_lists_runs_best_validation_first(workspace, runner):
    root, _, _ = workspace
    result = runner.invoke(app, ["compare", str(root / "runs"), "--json", "--resamples", "300"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert sorted(row["run"] for row in rows) == ["audio", "seed"]
    assert rows[0]["splits"]["validation"]["mean_accuracy"] >= rows[1]["splits"]["validation"]["mean_accuracy"]
    audio = next(row for row in rows if row["run"] == "audio")
    assert audio["seeds"] == [1, 2] and audio["splits"]["validation"]["mean_accuracy_std"] is not None
    seed_metrics = json.loads((root / "runs" / "seed" / "metrics.json").read_text())
    seed = next(row for row in rows if row["run"] == "seed")
    assert seed["splits"]["test"]["mean_accuracy"] == seed_metrics["test"]["mean_accuracy"]
    assert seed["splits"]["test"]["baseline_mean_accuracy"] == seed_metrics["test"]["baseline_mean_accuracy"]

    table = runner.invoke(app, ["compare", str(root / "runs"), "--resamples", "300"])
    lines = table.stdout.splitlines()
    header = lines.index(next(line for line in lines if line.startswith("run ")))
    assert lines[header].split()[:5] == ["run", "head", "sets", "seeds", "cache"]
    assert lines[header + 1].startswith(rows[0]["run"]) and lines[header + 2].startswith(rows[1]["run"])
    assert "random ResNet50" in table.stdout


def test_evaluate_reproduces_the_run_scores_on_the_same_cache(workspace, runner):
    root, cache, _ = workspace
    result = runner.invoke(
        app, ["evaluate", str(root / "runs" / "seed"), "--cache", str(cache), "--split", "test", "--json"]
    )
    assert result.exit_code == 0, result.output
    scores = json.loads(result.stdout)
    recorded = json.loads((root / "runs" / "seed" / "metrics.json").read_text())
    assert list(scores) == ["test"]
    assert scores["test"]["mean_accuracy"] == pytest.approx(recorded["test"]["mean_accuracy"], abs=1e-6)
    assert scores["test"]["baseline_mean_accuracy"] == pytest.approx(
        recorded["test"]["baseline_mean_accuracy"], abs=1e-9
    )


def test_evaluate_defaults_to_the_run_cache_and_prints_tables(workspace, runner):
    root, _, _ = workspace
    result = runner.invoke(app, ["evaluate", str(root / "runs" / "audio")])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    header = next(index for index, line in enumerate(lines) if line.startswith("split "))
    assert lines[header].split()[2:4] == ["mean", "acc"] and "baseline" in lines[header]
    assert [line.split()[0] for line in lines[header + 1 : header + 4]] == ["test", "train", "validation"]
    assert "the best of seeds 1, 2 on validation" in result.stdout and "--weights none" in result.stdout


def test_evaluate_refuses_a_cache_built_with_another_config_naming_the_difference(workspace, runner, tmp_path):
    root, _, _ = workspace
    other = write_synthetic_cache(
        tmp_path / "other",
        {"test": 4},
        frames=FRAMES,
        frames_per_segment=2,
        config={**synthetic_config(FRAMES, 2), "crop_size": 32},
    )
    result = runner.invoke(app, ["evaluate", str(root / "runs" / "seed"), "--cache", str(other)])
    assert result.exit_code == ExitCode.USAGE
    assert "different extraction config" in result.stderr
    assert (
        "run -> cache" in result.stderr
        and "frames_per_segment: 1 -> 2" in result.stderr
        and "crop_size: None -> 32" in result.stderr
    )
    assert "Traceback" not in result.output


def test_bad_flags_are_usage_errors(workspace, runner, tmp_path):
    _, cache, _ = workspace
    head = runner.invoke(app, ["fit", "--cache", str(cache), "--out", str(tmp_path / "x"), "--head", "transformer"])
    assert head.exit_code == ExitCode.USAGE and "--head must be one of" in head.stderr
    seeds = runner.invoke(app, ["fit", "--cache", str(cache), "--out", str(tmp_path / "x"), "--seeds", "1,two"])
    assert seeds.exit_code == ExitCode.USAGE and "comma-separated integers" in seeds.output
    missing = runner.invoke(app, ["fit", "--cache", str(tmp_path / "nowhere"), "--out", str(tmp_path / "y")])
    assert missing.exit_code == ExitCode.USAGE and "no such cache folder" in missing.stderr
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--epochs", "0"], "error: --epochs must be at least 1, got 0"),
        (["--batch-size", "0"], "error: --batch-size must be at least 1, got 0"),
        (["--validation-fraction", "1.5"], "error: --validation-fraction must be in (0, 1), got 1.5"),
        (["--lstm-units", "0"], "error: --lstm-units must be at least 1, got 0"),
        (["--seeds", "1,1"], "error: --seeds must not repeat a seed, got (1, 1)"),
    ],
)
def test_an_option_error_names_the_flag(runner, tmp_path, flags, message):
    result = runner.invoke(app, ["fit", "--cache", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x"), *flags])
    assert result.exit_code == ExitCode.USAGE
    assert result.stderr.strip() == message


def test_a_run_is_replaced_only_with_overwrite(workspace, runner, tmp_path):
    _, cache, _ = workspace
    arguments = [
        "fit",
        "--cache",
        str(cache),
        "--out",
        str(tmp_path / "run"),
        "--head",
        "audio",
        "--epochs",
        "1",
        *SMALL,
    ]
    assert runner.invoke(app, arguments).exit_code == 0
    refused = runner.invoke(app, arguments)
    assert refused.exit_code == ExitCode.USAGE and "--overwrite" in refused.stderr
    replaced = runner.invoke(app, [*arguments, "--overwrite"])
    assert replaced.exit_code == 0, replaced.output


def test_compare_on_a_folder_without_runs(runner, tmp_path):
    result = runner.invoke(app, ["compare", str(tmp_path)])
    assert result.exit_code == 0 and "no finished runs" in result.stdout


def test_fit_refuses_a_damaged_cache_with_the_readers_message(tmp_path, runner):
    import h5py

    cache = write_synthetic_cache(tmp_path / "cache", {"train": 20, "validation": 8}, frames=FRAMES)
    shard = sorted(cache.glob("shard-*.h5"))[0]
    with h5py.File(shard, "r") as handle:
        offset = handle["face_embeddings"].id.get_chunk_info(0).byte_offset
    data = bytearray(shard.read_bytes())
    data[offset + 100] ^= 0xFF  # inside the first video's embeddings, guarded by Fletcher-32
    shard.write_bytes(bytes(data))
    result = runner.invoke(app, ["fit", "--cache", str(cache), "--out", str(tmp_path / "run"), "--epochs", "1", *SMALL])
    assert result.exit_code == ExitCode.USAGE
    assert str(shard) in result.stderr and "verify" in result.stderr
    assert not (tmp_path / "run" / "model.keras").exists()


def test_overwrite_keeps_the_old_run_when_the_new_cache_is_unusable(workspace, runner, tmp_path):
    root, _, _ = workspace
    run = root / "runs" / "seed"
    before = sorted(path.name for path in run.iterdir())
    result = runner.invoke(
        app,
        ["fit", "--cache", str(tmp_path / "no-such-cache"), "--out", str(run), "--overwrite", "--epochs", "1", *SMALL],
    )
    assert result.exit_code == ExitCode.USAGE and "no such cache folder" in result.stderr
    assert sorted(path.name for path in run.iterdir()) == before


def test_a_split_name_the_cache_lacks_is_a_usage_error_naming_the_splits(workspace, runner, tmp_path):
    _, cache, _ = workspace
    result = runner.invoke(
        app, ["fit", "--cache", str(cache), "--out", str(tmp_path / "typo"), "--validation-split", "validaton", *SMALL]
    )
    assert result.exit_code == 2
    assert (
        "--validation-split 'validaton' names no split; the cache's splits are: test, train, validation"
        in result.stderr
    )
    assert not (tmp_path / "typo").exists()


@pytest.mark.parametrize("columns", ["80", "200"])
def test_fit_help_keeps_flags_whole_and_descriptions_wide_without_python_types(runner, columns):
    result = runner.invoke(app, ["fit", "--help"], env={"COLUMNS": columns})
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert "--mixed-precision / --no-mixed-precision" in text and "…" not in text
    fraction = next(line for line in text.splitlines() if "--validation-fraction" in line)
    assert "--validation-fraction SHARE" in fraction and "Share of the training split's source videos" in fraction
    assert not re.search(r"<(int|float|str|path|bool)>|<list\[|\{\w+\}", text), "help shows Python types"


def test_fit_help_shows_every_fit_option_with_its_help(runner):
    result = runner.invoke(app, ["fit", "--help"], env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    entries = re.split(r"\n  (?=--)", result.stdout)  # one entry per flag, its help wrapped below it
    for name, (field, _) in leaf_fields(FitOptions).items():
        entry = next((entry for entry in entries if entry.startswith(flag_name(name) + " ")), None)
        assert entry is not None, f"no {flag_name(name)} in fit --help"
        assert "".join(field.metadata["help"].split()) in "".join(entry.split()), name


def test_fit_and_sweep_read_the_folder_extraction_writes_by_default():
    from cache.schema import DEFAULT_CACHE
    from train.sweep import SweepOptions

    assert FitOptions().cache == SweepOptions(out="runs/sweep").cache == DEFAULT_CACHE != "cache"


@pytest.mark.parametrize(
    "command, usage",
    [
        ("evaluate", "evaluate [OPTIONS] RUN"),
        ("compare", "compare [OPTIONS] [FOLDER...]"),
        ("predict", "predict [OPTIONS] RUN VIDEO..."),
        ("audit", "audit [OPTIONS] RUN"),
        ("ensemble", "ensemble [OPTIONS] RUN..."),
    ],
)
def test_every_command_help_shows_arguments_by_their_metavar(runner, command, usage):
    text = runner.invoke(app, [command, "--help"]).stdout
    assert usage in text, text
    assert not re.search(r"<(int|float|str|path|bool)>|<list\[|\{\w+", text), "help shows Python types"
