"""``make chalearn`` end to end on generated clips: the report with the published rows, then a rerun that redoes nothing."""

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from cache.schema import TRAITS
from common.errors import OptionError
from extract.synthetic import talking_head_clip
from train.groups import GroupsError
from train.protocol import PUBLISHED, ProtocolOptions, run_protocol, split_folders

ROOT = Path(__file__).resolve().parents[2]
CLIPS = {"train": 6, "validation": 3, "test": 6}
TINY_FIT = "visual_units=8 visual_projection=4 audio_units=4 lstm_units=4 lr=1e-3"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """ChaLearn-shaped: data/{train,validation,test}/*.mp4, a labels CSV, and groups in ChaLearn's layout."""
    root = tmp_path_factory.mktemp("chalearn")
    labels, groups = [], ["VideoName;YouTubeID;Ethnicity;Gender"]
    for offset, (split, count) in enumerate(CLIPS.items()):
        (root / "data" / split).mkdir(parents=True)
        for index in range(count):
            variant = index + 6 * offset  # distinct bytes per clip
            name = f"{split}{index}.mp4"
            talking_head_clip(
                root / "data" / split / name, seconds=2.0, brightness=0.5 + 0.05 * variant, frequency=160 + 40 * variant
            )
            labels.append({"video_id": name, **{trait: 0.3 + 0.02 * variant for trait in TRAITS}})
            groups.append(f"{name};{split}{index};{1 + index % 2};{1 + index % 2}")
    with open(root / "labels.csv", "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["video_id", *TRAITS])
        writer.writeheader()
        writer.writerows(labels)
    (root / "eth_gender_annotations_test.csv").write_text("\n".join(groups) + "\n", encoding="utf-8")
    return root


def make_chalearn(root):
    flags = (
        "--extract-flags '--frames 4 --crop-size 32 --jobs 1 --quiet' --heads audio,seed --seeds 1,2 --epochs 1"
        f" --fit-settings '{TINY_FIT}' --resamples 200 --min-group 2"
    )
    return subprocess.run(
        [
            "make",
            "--no-print-directory",
            "-C",
            str(ROOT),
            "-o",
            ".venv/.installed",  # the test's interpreter stands in for the Makefile's .venv
            "chalearn",
            f"BIN={Path(sys.executable).parent}",
            f"DATA={root / 'data'}",
            f"LABELS={root / 'labels.csv'}",
            f"GROUPS={root / 'eth_gender_annotations_test.csv'}",
            f"CACHE={root / 'cache'}",
            f"REPORT={root / 'report'}",
            "WEIGHTS=none",
            f"CHALEARN_FLAGS={flags}",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_make_chalearn_writes_the_report_and_a_second_run_redoes_nothing(dataset):
    first = make_chalearn(dataset)
    assert first.returncode == 0, first.stdout + first.stderr
    report = dataset / "report"
    text = (report / "report.md").read_text(encoding="utf-8")
    for name, value in PUBLISHED:
        assert f"| {name} (published) | {value:.4f} |" in text
    for head in ("audio", "seed"):
        assert f"| runs/head={head},epochs=1," in text
    assert "| ensemble (ensemble) |" in text and "worst group" in text
    assert "## Audit of" in text and "Gender" in text and "female" in text and "Caucasian" in text
    produced = sorted(path for path in report.rglob("*") if path.is_file()) + sorted((dataset / "cache").rglob("*"))
    times = {path: path.stat().st_mtime_ns for path in produced}
    second = make_chalearn(dataset)
    assert second.returncode == 0, second.stdout + second.stderr
    for step in ("extraction", "sweep", "ensemble", "report"):
        assert f"{step}: up to date, skipped" in second.stdout
    assert {path: path.stat().st_mtime_ns for path in produced} == times


def test_bad_protocol_options_are_refused_before_any_work(dataset, tmp_path):
    data = (str(dataset / "data"),)
    groups = (str(dataset / "eth_gender_annotations_test.csv"),)
    with pytest.raises(OptionError, match="heads must name heads among"):
        ProtocolOptions(data=data, labels=("l.csv",), groups=groups, heads=("nope",))
    with pytest.raises(OptionError, match="no test folder"):
        split_folders((f"train={dataset / 'data' / 'train'}",))
    report = tmp_path / "report"
    with pytest.raises(OptionError, match=r"absent\.pkl: no such file"):
        run_protocol(
            ProtocolOptions(data=data, labels=(str(tmp_path / "absent.pkl"),), groups=groups, report=str(report))
        )
    not_csv = tmp_path / "groups.csv"
    not_csv.write_bytes(b"\x00\x01")
    with pytest.raises(GroupsError, match="not a CSV file"):
        run_protocol(
            ProtocolOptions(
                data=data, labels=(str(dataset / "labels.csv"),), groups=(str(not_csv),), report=str(report)
            )
        )
    assert not report.exists()
