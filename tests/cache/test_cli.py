"""cache.cli: `python -m cache info|verify|export|labels|remove|prune`, their output and exit codes."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from cache.cli import app
from cache.labels import read_label_table
from cache.manifest import config_hash, write_failures
from cache.synthetic import SMALL_CONFIG, add_foreign_shard, random_record, write_random_cache
from cache.writer import CacheWriter, shard_name
from common.errors import ExitCode

VIDEOS = 6


@pytest.fixture
def cache_dir(tmp_path):
    cache_dir = write_random_cache(tmp_path / "cache", range(VIDEOS), videos_per_shard=4)
    write_failures(cache_dir, [("/data/broken, really.mp4", "cannot decode: invalid data")])
    return cache_dir


def run(*arguments):
    return CliRunner().invoke(app, [str(argument) for argument in arguments])


def assert_usage_error(result, *words):
    assert result.exit_code == ExitCode.USAGE, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert all(word in lines[0] for word in words), lines[0]
    assert "Traceback" not in result.output


def test_info(cache_dir):
    result = run("info", cache_dir)
    assert result.exit_code == 0, result.output
    assert f"videos      {VIDEOS} (train {VIDEOS}) in 2 shards, 0 labelled" in result.stdout
    assert "random ResNet50 weights" in result.stdout  # SMALL_CONFIG says weights=none
    assert "failures    1" in result.stdout and "/data/broken, really.mp4: cannot decode" in result.stdout


def test_info_of_a_cache_whose_config_does_not_name_weights(tmp_path):
    config = {key: value for key, value in SMALL_CONFIG.items() if key != "weights"}
    with CacheWriter(tmp_path, config) as writer:
        writer.add(random_record(0))
    result = run("info", tmp_path)
    assert result.exit_code == 0, result.output
    assert "weights=?" in result.stdout


def test_info_json(cache_dir):
    result = run("info", cache_dir, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["videos"] == VIDEOS and isinstance(summary["videos"], int)
    assert summary["splits"] == {"train": VIDEOS}
    assert summary["frames"] == SMALL_CONFIG["frames"]
    assert summary["failures"] == [{"path": "/data/broken, really.mp4", "reason": "cannot decode: invalid data"}]


def test_python_dash_m_cache(cache_dir, children):
    result = subprocess.run(
        [sys.executable, "-m", "cache", "info", str(cache_dir), "--json"],
        capture_output=True,
        text=True,
        timeout=children.timeout,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["videos"] == VIDEOS


def test_verify_exit_codes_and_repair(cache_dir):
    ok = run("verify", cache_dir)
    assert ok.exit_code == 0 and "ok" in ok.stdout
    damaged = cache_dir / shard_name(1)
    damaged.write_bytes(damaged.read_bytes()[:100])
    found = run("verify", cache_dir)
    assert found.exit_code == ExitCode.PARTIAL
    assert f"{damaged}: size 100 bytes" in found.stderr and "--repair" in found.stderr
    assert_usage_error(run("info", cache_dir), str(damaged), "--repair")

    repaired = run("verify", cache_dir, "--repair")
    assert repaired.exit_code == 0, repaired.output
    assert "2 videos to re-extract" in repaired.stdout
    assert run("verify", cache_dir).exit_code == 0
    assert json.loads(run("info", cache_dir, "--json").stdout)["videos"] == VIDEOS - 2


def test_export(cache_dir, tmp_path):
    out = tmp_path / "videos.csv"
    result = run("export", cache_dir, "--out", out)
    assert result.exit_code == 0 and f"wrote {VIDEOS} rows" in result.stdout
    with open(out, encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(row["video_id"] for row in rows) == [random_record(number).video_id for number in range(VIDEOS)]
    assert_usage_error(run("export", cache_dir, "--out", tmp_path / "no such folder" / "videos.csv"), "no such folder")


def test_labels_merge_and_replace(cache_dir, tmp_path):
    first = tmp_path / "first.csv"
    first.write_text(f"video_id,openness,neuroticism\n{random_record(0).video_id},0.5,0.25\nnot-cached.mp4,0.1,\n")
    second = tmp_path / "second.csv"
    second.write_text(f"video_id,openness\n{random_record(0).video_id},0.75\n{random_record(1).video_id},0.125\n")
    merged = run("labels", cache_dir, first)
    assert merged.exit_code == 0, merged.output
    assert (
        "labels for 2 videos merged; 1 of the 6 cached videos is among them, 1 labelled id is not in the cache"
        in merged.stdout
    )
    assert run("labels", cache_dir, second).exit_code == 0
    assert read_label_table(cache_dir) == {
        random_record(0).video_id: {"openness": 0.75, "neuroticism": 0.25},
        random_record(1).video_id: {"openness": 0.125},
        "not-cached.mp4": {"openness": 0.1},
    }
    replaced = run("labels", cache_dir, second, "--replace")
    assert replaced.exit_code == 0 and "replaced" in replaced.stdout
    assert read_label_table(cache_dir) == {
        random_record(0).video_id: {"openness": 0.75},
        random_record(1).video_id: {"openness": 0.125},
    }
    assert json.loads(run("info", cache_dir, "--json").stdout)["labelled"] == 2


def test_a_replace_that_matches_no_cached_video_is_refused_with_the_labels_intact(cache_dir, tmp_path):
    good = tmp_path / "good.csv"
    good.write_text(f"video_id,openness\n{random_record(0).video_id},0.5\n")
    assert run("labels", cache_dir, good).exit_code == 0
    before = (cache_dir / "labels.csv").read_bytes()
    bare = tmp_path / "bare.csv"
    bare.write_text("video_id,openness\n" + "".join(f"video-{number:05d},0.25\n" for number in range(VIDEOS)))
    assert_usage_error(
        run("labels", cache_dir, bare, "--replace"),
        f"{bare}: none of its 6 labelled ids is among the 6 cached videos",
        "nothing was changed",
        "6 labelled ids lack the file extension the cached ids carry ('video-00000' is cached as 'video-00000.mp4')",
    )
    assert (cache_dir / "labels.csv").read_bytes() == before
    merged = run("labels", cache_dir, bare)
    assert merged.exit_code == 0 and "0 of the 6 cached videos are among them" in merged.stdout
    assert (
        "warning: no cached video has labels from these files; 6 labelled ids lack the file extension" in merged.stderr
    )


def test_remove_and_prune(cache_dir):
    removed = run("remove", cache_dir, random_record(0).video_id, random_record(5).video_id)
    assert removed.exit_code == 0 and f"{cache_dir}: removed 2 videos; 4 videos left" in removed.stdout
    assert json.loads(run("info", cache_dir, "--json").stdout)["videos"] == 4
    assert_usage_error(run("remove", cache_dir, "video-00001"), "no cached video named 'video-00001' (did you mean")
    assert_usage_error(run("prune", cache_dir), "--missing not given")
    # The synthetic sources (/data/train/...) exist nowhere: pruning all of them is refused.
    assert_usage_error(run("prune", cache_dir, "--missing"), "the source file of none of its 4 videos exists from here")
    assert run("verify", cache_dir).exit_code == 0


def test_help_is_plain_with_readable_metavars():
    for command, usage in [
        ("labels", "labels [OPTIONS] CACHE FILE..."),
        ("show", "show [OPTIONS] CACHE VIDEO_ID..."),
        ("remove", "remove [OPTIONS] CACHE VIDEO_ID..."),
        ("prune", "prune [OPTIONS] CACHE"),
    ]:
        text = run(command, "--help").output
        assert usage in text and "<list" not in text and "{" not in text and "\u256d" not in text, text
        assert "\n  CACHE " in text


def test_a_bad_label_file_changes_nothing(cache_dir, tmp_path):
    assert run("labels", cache_dir, tmp_path / "missing.csv").exit_code == ExitCode.USAGE
    bad = tmp_path / "bad.csv"
    bad.write_text("video_id,openness\na.mp4,1.5\n")
    assert_usage_error(run("labels", cache_dir, bad), f"{bad}:2", "outside [0, 1]")
    assert read_label_table(cache_dir) == {}


COMMANDS_ON_A_CACHE = [  # every command that reads or writes a cache folder (a .csv argument is made in the folder)
    ["info"],
    ["info", "--json"],
    ["verify"],
    ["verify", "--repair"],
    ["export", "--out", "x.csv"],
    ["labels", "labels.csv"],
    ["remove", "video-00000.mp4"],
    ["prune", "--missing"],
]


@pytest.mark.parametrize("command", COMMANDS_ON_A_CACHE)
def test_a_folder_that_is_not_a_cache(tmp_path, command):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "labels.csv").write_text("video_id,openness\na.mp4,0.5\n")
    arguments = [
        command[0],
        folder,
        *[folder / argument if argument.endswith(".csv") else argument for argument in command[1:]],
    ]
    assert_usage_error(run(*arguments), str(folder), "not a cache")
    assert sorted(path.name for path in folder.iterdir()) == ["labels.csv"]


@pytest.mark.parametrize("command", COMMANDS_ON_A_CACHE)
def test_a_cache_path_that_is_a_file(tmp_path, command):
    path = tmp_path / "features"
    path.write_text("not a folder")
    (tmp_path / "labels.csv").write_text("video_id,openness\na.mp4,0.5\n")
    arguments = [
        command[0],
        path,
        *[tmp_path / argument if argument.endswith(".csv") else argument for argument in command[1:]],
    ]
    assert_usage_error(run(*arguments), f"{path} is a file, not a cache folder")
    assert path.read_text() == "not a folder" and not (tmp_path / "x.csv").exists()


@pytest.mark.parametrize(
    "command",
    [
        ["info"],
        ["verify"],
        ["verify", "--repair"],
        ["export", "--out", "x.csv"],
        ["labels", "labels.csv"],
        ["remove", "video-00000.mp4"],
        ["prune", "--missing"],
    ],
)
def test_a_cache_folder_holding_python_source(cache_dir, tmp_path, command):
    (cache_dir / "__init__.py").write_text("")
    (tmp_path / "labels.csv").write_text(f"video_id,openness\n{random_record(0).video_id},0.5\n")
    before = sorted(path.name for path in cache_dir.iterdir())
    arguments = [
        command[0],
        cache_dir,
        *[tmp_path / argument if argument.endswith(".csv") else argument for argument in command[1:]],
    ]
    assert_usage_error(run(*arguments), f"{cache_dir}: holds Python source (__init__.py)", "--cache features/")
    assert sorted(path.name for path in cache_dir.iterdir()) == before


def test_counts_of_one_are_singular(tmp_path):
    cache_dir = write_random_cache(tmp_path / "cache", [0])
    assert "videos      1 (train 1) in 1 shard, 0 labelled" in run("info", cache_dir).stdout
    labels = tmp_path / "labels.csv"
    labels.write_text(f"video_id,openness\n{random_record(0).video_id},0.5\n")
    assert (
        "labels for 1 video merged; 1 of the 1 cached video is among them, 0 labelled ids are not in the cache"
        in run("labels", cache_dir, labels).stdout
    )
    (cache_dir / shard_name(0)).unlink()
    found = run("verify", cache_dir)
    assert f"{cache_dir}: 1 problem; run" in found.stderr
    assert f"{cache_dir}: repaired 1 problem, 1 video to re-extract" in run("verify", cache_dir, "--repair").stdout


def test_info_and_verify_during_a_run_name_its_pid(tmp_path, children):
    cache_dir = tmp_path / "cache"
    child = children.hold_lock(str(cache_dir))  # a run that has opened the cache but finished no video yet
    try:
        shown = run("info", cache_dir)
        assert shown.exit_code == 0, shown.output
        assert (
            f"run         in progress (pid {child.pid}): the counts below are the videos finished so far"
            in shown.stdout
        )
        assert "videos      0 (none) in 0 shards" in shown.stdout
        assert json.loads(run("info", cache_dir, "--json").stdout)["run_in_progress"] == f"pid {child.pid}"
        assert_usage_error(run("verify", cache_dir), f"a run (pid {child.pid}) is writing to this cache")
    finally:
        child.kill()
        children.wait(child)
    shown = run("info", cache_dir)
    assert shown.exit_code == 0 and "in progress" not in shown.stdout
    assert json.loads(run("info", cache_dir, "--json").stdout)["run_in_progress"] is None
    assert run("verify", cache_dir).exit_code == 0


HOLD_ONLY_THE_LOCK = """
    import sys, time
    from cache.lock import CacheLock
    with CacheLock(sys.argv[1]):
        print("ready", flush=True)
        time.sleep(60)
"""


def test_info_of_a_cache_a_run_is_still_creating(tmp_path, children):
    child = children.start(HOLD_ONLY_THE_LOCK, str(tmp_path))  # locked, no config.json yet
    try:
        assert_usage_error(
            run("info", tmp_path), f"{tmp_path}: not a cache", f"a run, pid {child.pid}, is creating it now"
        )
    finally:
        child.kill()
        children.wait(child)


def test_verify_names_a_foreign_shard_and_repair_moves_it_aside(cache_dir, tmp_path):
    foreign = add_foreign_shard(cache_dir, [VIDEOS], tmp_path)
    found = run("verify", cache_dir)
    assert found.exit_code == ExitCode.PARTIAL
    assert (
        f"{foreign}: not in the index, and foreign shard: built with config " in found.stderr
        and f"this cache's config is {config_hash(SMALL_CONFIG)}, weights='none'" in found.stderr
    )
    repaired = run("verify", cache_dir, "--repair")
    assert repaired.exit_code == 0, repaired.output
    assert f"moved foreign shard to {cache_dir / 'foreign' / foreign.name}" in repaired.stdout
    assert f"{cache_dir}: repaired 1 problem, 0 videos to re-extract" in repaired.stdout
    assert run("verify", cache_dir).exit_code == 0 and (cache_dir / "foreign" / foreign.name).exists()
