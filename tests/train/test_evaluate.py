"""``python -m train evaluate``: scores on another cache, and the warning when it holds videos the run trained on."""

import json

from typer.testing import CliRunner

from train.cli import app
from train.config import FitOptions
from train.fit import fit
from train.synthetic import add_synthetic_set, write_synthetic_cache

FRAMES = 4
TINY = dict(lr=1e-3, visual_units=8, visual_projection=4, audio_units=4, lstm_units=4, verbose=0)


def test_a_cache_holding_the_runs_training_videos_is_warned_about_by_id_and_by_content(tmp_path):
    cache = write_synthetic_cache(tmp_path / "cache", {"train": 24, "validation": 8}, frames=FRAMES)
    run = tmp_path / "run"
    fit(FitOptions(cache=str(cache), out=str(run), head="audio", epochs=1, **TINY), echo=lambda line: None)
    # Same extraction config; 'train' holds 4 of the videos trained on, 'new' 3 copies of them under new names.
    other = write_synthetic_cache(tmp_path / "other", {"train": 4, "new": 6}, frames=FRAMES, copied=3)
    runner = CliRunner()
    result = runner.invoke(app, ["evaluate", str(run), "--cache", str(other)])
    assert result.exit_code == 0, result.output
    leaks = [line for line in result.stdout.splitlines() if "leak" in line]
    tail = "leak: their scores are optimistic"
    assert leaks == [
        "warning: 0 of the 6 'new' videos were trained on by this run (same video id) and 3 have the content of a"
        f" video it trained on (same file hash); {tail}",
        "warning: 4 of the 4 'train' videos were trained on by this run (same video id) and 4 have the content of a"
        f" video it trained on (same file hash); {tail}",
    ]
    as_json = runner.invoke(app, ["evaluate", str(run), "--cache", str(other), "--split", "new", "--json"])
    assert as_json.exit_code == 0 and set(json.loads(as_json.stdout)) == {"new"}
    assert "0 of the 6 'new' videos were trained on" in as_json.stderr
    clean = runner.invoke(app, ["evaluate", str(run), "--split", "validation"])
    assert clean.exit_code == 0 and "validation" in clean.stdout and "leak" not in clean.output


def test_a_run_recorded_before_features_opens_and_evaluates_on_the_default_sets(tmp_path):
    cache = write_synthetic_cache(tmp_path / "cache", {"train": 24, "validation": 8}, frames=FRAMES)
    run = tmp_path / "run"
    fit(FitOptions(cache=str(cache), out=str(run), epochs=1, **TINY), echo=lambda line: None)
    runner = CliRunner()
    before = runner.invoke(app, ["evaluate", str(run), "--split", "validation", "--json"])
    assert before.exit_code == 0, before.output
    for name in ("options.json", "run.json"):
        recorded = json.loads((run / name).read_text())
        assert recorded.pop("features") == ["face:resnet50", "audio:pyaa"]
        (run / name).write_text(json.dumps(recorded))
    after = runner.invoke(app, ["evaluate", str(run), "--split", "validation", "--json"])
    assert after.exit_code == 0, after.output
    assert json.loads(after.stdout) == json.loads(before.stdout)
    compared = runner.invoke(app, ["compare", str(run), "--json", "--resamples", "100"])
    assert json.loads(compared.stdout)[0]["features"] == ["face:resnet50", "audio:pyaa"]


def test_evaluate_refuses_a_cache_lacking_a_runs_set_and_names_the_add_command(tmp_path):
    cache = write_synthetic_cache(tmp_path / "cache", {"train": 24, "validation": 8}, frames=FRAMES)
    run = tmp_path / "run"
    fit(FitOptions(cache=str(cache), out=str(run), epochs=1, **TINY), echo=lambda line: None)
    options = json.loads((run / "options.json").read_text())
    (run / "options.json").write_text(json.dumps({**options, "features": ["face:vgg16", "audio:pyaa"]}))
    result = CliRunner().invoke(app, ["evaluate", str(run), "--split", "validation"])
    assert result.exit_code == 2, result.output
    (line,) = result.output.splitlines()
    assert line.startswith(f"error: {cache}: holds no feature set 'face:vgg16'")
    assert line.endswith(f"add it with `python -m extract add {cache} --features face:vgg16`")


def test_evaluate_refuses_a_cache_holding_a_runs_set_with_another_identity(tmp_path):
    cache = write_synthetic_cache(tmp_path / "cache", {"train": 24, "validation": 8}, frames=FRAMES)
    folder = add_synthetic_set(cache, "face:vgg16", 512)
    run = tmp_path / "run"
    features = ("face:vgg16", "audio:pyaa")
    fit(FitOptions(cache=str(cache), out=str(run), features=features, epochs=1, **TINY), echo=lambda line: None)
    runner = CliRunner()
    assert runner.invoke(app, ["evaluate", str(run), "--split", "validation"]).exit_code == 0
    descriptor = json.loads((folder / "descriptor.json").read_text())
    (folder / "descriptor.json").write_text(json.dumps({**descriptor, "identity": "0123abcd"}))
    result = runner.invoke(app, ["evaluate", str(run), "--split", "validation"])
    assert result.exit_code == 2, result.output
    assert f"{cache}: holds face:vgg16 with identity 0123abcd, but the run was trained on face:vgg16 synthetic0" in (
        result.output
    )
