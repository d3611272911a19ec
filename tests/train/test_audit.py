"""The per-group audit: known shifts found within their intervals, the gap's test, and the command on a real run."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from common.errors import ExitCode
from train.audit import AUDIT_FILE, MIN_GROUP_VIDEOS, audit_column, gap_p_value, summarize
from train.cli import app
from train.config import FitOptions
from train.fit import fit
from train.synthetic import write_synthetic_cache

RESAMPLES = 2000  # quick on 2 cores, fine enough for p-values of 0.01
SHIFT = 0.06  # the known amount one group's labels are raised by
VIDEOS = 200  # per group
TRAIT_COUNT = 5


def generated(shift: float, seed: int = 3):
    """Two groups of VIDEOS videos; the model is blind to groups, and group b's labels are raised by ``shift``."""
    rng = np.random.default_rng(seed)
    truth = rng.uniform(0.3, 0.7, size=(2 * VIDEOS, TRAIT_COUNT))
    predictions = truth + rng.normal(0.0, 0.08, size=truth.shape)
    groups = np.array(["a"] * VIDEOS + ["b"] * VIDEOS, dtype=object)
    labels = truth + np.where(groups == "b", shift, 0.0)[:, None]
    return labels, predictions, np.full(TRAIT_COUNT, 0.5), groups


def test_a_shifted_group_shows_its_signed_error_within_the_interval_and_a_small_p_value():
    labels, predictions, baseline, groups = generated(SHIFT)
    result = audit_column(labels, predictions, baseline, groups, RESAMPLES)
    shifted, unshifted = result["groups"]["b"], result["groups"]["a"]
    for value, (low, high) in zip(shifted["signed_error"], shifted["signed_error_ci95"]):
        assert low <= -SHIFT <= high and low < value < high < 0  # the model rates b lower than its annotators did
    assert np.max(np.abs(unshifted["signed_error"])) < SHIFT / 4  # the other group: no shift to find
    gap = result["largest_gap"]
    assert (gap["highest"], gap["lowest"]) == ("a", "b") and gap["p_value"] < 0.01
    assert gap["gap"] == pytest.approx(unshifted["mean_accuracy"] - shifted["mean_accuracy"])
    assert shifted["n"] == unshifted["n"] == VIDEOS and not shifted["too_small"]
    assert shifted["baseline_mean_accuracy"] == pytest.approx(1 - np.abs(labels[VIDEOS:] - 0.5).mean())
    low, high = shifted["ci95"]
    assert low < shifted["mean_accuracy"] < high


def test_without_a_shift_the_gap_is_not_significant():
    labels, predictions, baseline, groups = generated(0.0)
    gap = audit_column(labels, predictions, baseline, groups, RESAMPLES)["largest_gap"]
    assert gap["p_value"] > 0.2


def test_the_gap_test_is_seeded_and_counts_resamples_as_documented():
    rng = np.random.default_rng(0)
    samples = [rng.normal(0.0, 1.0, 40), rng.normal(0.1, 1.0, 60), rng.normal(0.0, 2.0, 30)]
    first = gap_p_value(samples, 999)
    assert first == gap_p_value(samples, 999)
    assert 1 / 1000 <= first <= 1 and round(first * 1000) == pytest.approx(first * 1000)
    identical = [np.full(10, 0.9), np.full(12, 0.9)]
    assert gap_p_value(identical, 999) == 1.0
    assert gap_p_value(samples[:1], 999) is None and gap_p_value([samples[0], np.ones(1)], 999) is None


def test_seeds_are_averaged_and_small_groups_are_marked_and_kept_out_of_the_gap():
    labels, predictions, baseline, groups = generated(SHIFT)
    groups = groups.copy()
    groups[:5] = "tiny"
    groups[5:8] = None  # no group in this column
    seeds = np.stack([predictions, predictions + 0.02])
    result = audit_column(labels, seeds, baseline, groups, 500, min_group=30)
    tiny = result["groups"]["tiny"]
    assert tiny["too_small"] and tiny["n"] == 5
    assert {result["largest_gap"]["highest"], result["largest_gap"]["lowest"]} == {"a", "b"}
    expected = (
        1
        - (np.abs(labels[8:VIDEOS] - predictions[8:VIDEOS]) + np.abs(labels[8:VIDEOS] - seeds[1, 8:VIDEOS])).mean() / 2
    )
    assert result["groups"]["a"]["mean_accuracy"] == pytest.approx(expected)
    assert result["groups"]["a"]["signed_error"] == pytest.approx(
        list((seeds[:, 8:VIDEOS] - labels[8:VIDEOS]).mean(axis=(0, 1)))
    )
    summary = summarize({"group": result})
    assert summary["worst_group"] == "group=b" and summary["gap_column"] == "group"
    assert summary["largest_gap"] == result["largest_gap"]["gap"]


TINY = {"visual_units": 8, "visual_projection": 4, "audio_units": 4, "lstm_units": 4, "lr": 1e-3, "verbose": 0}
TEST_VIDEOS = 64  # two groups of 32: large enough to read (MIN_GROUP_VIDEOS 30)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A finished run of two seeds on a synthetic cache whose test split has TEST_VIDEOS videos."""
    root = tmp_path_factory.mktemp("audit")
    cache = write_synthetic_cache(root / "cache", {"train": 40, "validation": 12, "test": TEST_VIDEOS}, frames=4)
    out = root / "runs" / "audio"
    fit(FitOptions(cache=str(cache), out=str(out), head="audio", epochs=1, seeds=(1, 2), **TINY), echo=lambda _: None)
    return out


def chalearn_groups(path, videos, with_extension=True):
    """ChaLearn's layout as shipped: semicolons, numeric codes; odd videos female, every fourth Asian."""
    lines = ["VideoName;YouTubeID;Ethnicity;Gender"]
    for index in videos:
        name = f"test-{index:05d}" + (".mp4" if with_extension else "")
        lines.append(f"{name};test-{index:05d};{1 if index % 4 == 0 else 2};{2 if index % 2 else 1}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def invoke(*arguments):
    return CliRunner().invoke(app, ["audit", *map(str, arguments), "--resamples", "300"])


def test_the_audit_of_a_run_reports_every_group_beside_its_baseline_and_writes_json(run, tmp_path):
    groups = chalearn_groups(tmp_path / "eth_gender_annotations_test.csv", range(TEST_VIDEOS), with_extension=False)
    result = invoke(run, "--groups", groups, "--min-group", "10")
    assert result.exit_code == 0, result.output
    written = json.loads((run / AUDIT_FILE).read_text())
    assert set(written["columns"]) == {"Ethnicity", "Gender"}
    assert set(written["columns"]["Gender"]["groups"]) == {"female", "male"}
    assert set(written["columns"]["Ethnicity"]["groups"]) == {"Asian", "Caucasian"}
    metrics = json.loads((run / "metrics.json").read_text())["test"]
    for column in written["columns"].values():
        entries = column["groups"].values()
        assert sum(entry["n"] for entry in entries) == TEST_VIDEOS
        # The groups' accuracies, weighted by size, are the run's own test score (mean over seeds).
        weighted = sum(entry["n"] * entry["mean_accuracy"] for entry in entries) / TEST_VIDEOS
        assert weighted == pytest.approx(metrics["mean_accuracy"], abs=1e-6)
        baseline = sum(entry["n"] * entry["baseline_mean_accuracy"] for entry in entries) / TEST_VIDEOS
        assert baseline == pytest.approx(metrics["baseline_mean_accuracy"], abs=1e-6)
    female = written["columns"]["Gender"]["groups"]["female"]
    row = next(line for line in result.stdout.splitlines() if line.startswith("female"))
    assert f"{female['mean_accuracy']:.4f}" in row and f"{female['baseline_mean_accuracy']:.4f}" in row
    assert (
        "largest gap:" in result.stdout
        and "null: every group of the column has the same mean accuracy" in result.stdout
    )
    assert written["unmatched"] == 0 and written["summary"]["gap_column"] in ("Ethnicity", "Gender")
    assert "--weights none" in written["warning"] and written["warning"] in result.stdout


def test_small_groups_are_marked_and_a_partial_file_says_how_many_videos_it_misses(run, tmp_path):
    groups = chalearn_groups(tmp_path / "groups.csv", range(30))
    out = tmp_path / "audit.json"
    result = invoke(run, "--groups", groups, "--out", out)
    assert result.exit_code == 0, result.output
    written = json.loads(out.read_text())
    assert written["n"] == 30 and written["unmatched"] == TEST_VIDEOS - 30
    assert f"note: {TEST_VIDEOS - 30} videos of split test are in no groups file" in result.stdout
    assert all(entry["too_small"] for entry in written["columns"]["Gender"]["groups"].values())
    assert written["columns"]["Gender"]["largest_gap"] is None and "largest gap: none" in result.stdout
    assert "female *" in result.stdout


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            b"VideoName;YouTubeID;Ethnicity;Gender\nvalidation-00000.mp4;v;1;2\nvalidation-00001.mp4;v;2;1\n",
            "matches none of the 64 videos of split 'test'",
        ),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "not a CSV file (binary content)"),
        (b"clip;who\ntest-00000.mp4;x\n", "no recognisable header"),
        (
            b"video_id,site\n" + b"".join(b"test-%05d.mp4,one\n" % index for index in range(TEST_VIDEOS)),
            "column 'site' has 'one' among the videos of split 'test', one group at most",
        ),
    ],
)
def test_bad_groups_files_are_refused_in_one_line_and_nothing_is_written(run, tmp_path, content, message):
    groups = tmp_path / "groups.csv"
    groups.write_bytes(content)
    out = tmp_path / "audit.json"
    result = invoke(run, "--groups", groups, "--out", out)
    assert result.exit_code == ExitCode.USAGE
    assert result.stdout == "" and len(result.stderr.strip().splitlines()) == 1
    assert message in result.stderr and str(groups) in result.stderr
    assert not out.exists()


def test_compare_with_groups_adds_the_worst_group_and_the_largest_gap_to_each_row(run, tmp_path):
    groups = chalearn_groups(tmp_path / "groups.csv", range(TEST_VIDEOS))
    assert TEST_VIDEOS // 2 >= MIN_GROUP_VIDEOS  # both genders readable; Asian (a quarter) is not
    audited = invoke(run, "--groups", groups, "--out", tmp_path / "audit.json")
    assert audited.exit_code == 0, audited.output
    gender = json.loads((tmp_path / "audit.json").read_text())["columns"]["Gender"]
    runner = CliRunner()
    result = runner.invoke(app, ["compare", str(run.parent), "--json", "--resamples", "300", "--groups", str(groups)])
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)
    test = row["splits"]["test"]["groups"]
    assert test["n"] == TEST_VIDEOS and test["gap_column"] == "Gender"
    assert test["largest_gap"] == pytest.approx(gender["largest_gap"]["gap"])
    assert test["gap_p_value"] == pytest.approx(gender["largest_gap"]["p_value"])
    readable = {f"Gender={name}": entry["mean_accuracy"] for name, entry in gender["groups"].items()}
    assert test["worst_accuracy"] <= min(readable.values()) and test["worst_group"] != "Ethnicity=Asian"
    assert row["splits"]["validation"]["groups"] is None
    assert "no group figures for audio on validation" in result.stderr
    table = runner.invoke(app, ["compare", str(run.parent), "--resamples", "300", "--groups", str(groups)])
    line = next(line for line in table.stdout.splitlines() if line.startswith("audio") and " test " in line)
    assert test["worst_group"] in line and f"{test['largest_gap']:.4f}" in line
    assert f"{test['worst_baseline_accuracy']:.4f}" in line


def test_compare_refuses_a_groups_file_that_names_no_video_it_compares(run, tmp_path):
    groups = tmp_path / "groups.csv"
    groups.write_text("video_id,site\nelsewhere-1.mp4,a\nelsewhere-2.mp4,b\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["compare", str(run.parent), "--resamples", "300", "--groups", str(groups)])
    assert result.exit_code == ExitCode.USAGE and result.stdout == ""
    assert f"error: {groups}: matches no video of any split of the runs compared" in result.stderr
