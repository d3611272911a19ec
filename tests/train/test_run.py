"""Run and ensemble folders: one interface over both, folders written before it still open, one writer, no import cycle."""

import ast
import graphlib
import json
from pathlib import Path

import numpy as np
import pytest

from cache.schema import TRAITS
from common.errors import OptionError
from train.audit import read_audited_split
from train.compare import collect_runs
from train.config import FitOptions
from train.dataset import CacheShape
from train.fit import fit
from train.run import FolderWriter, RunError, open_folder
from train.synthetic import write_synthetic_cache

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("cache", "extract", "train")
CONFIG = {"frames": 4, "frames_per_segment": 1, "synthetic": True, "weights": "none"}
CONFIG_HASH = "4cc5a8c7e010a544"
VIDEOS = ("validation-00000.mp4", "validation-00001.mp4")
LABELS = np.array([[0.6, 0.5, 0.4, 0.5, 0.5], [0.4, 0.5, 0.6, 0.5, 0.5]])


def _write(path: Path, value) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=1) + "\n", encoding="utf-8")


def _entry(accuracy: float, role: str) -> dict:
    """One split of a metrics.json, as ``fit`` wrote it (fields compare and ensemble read)."""
    return {
        "mean_accuracy": accuracy,
        "baseline_mean_accuracy": 0.9,
        "n": 2,
        "traits": dict.fromkeys(TRAITS, accuracy),
        "baseline_traits": dict.fromkeys(TRAITS, 0.9),
        "role": role,
    }


def _predictions(path: Path, predicted: np.ndarray) -> None:
    """A predictions.csv of the 'validation' split, in the format of train.predictions."""
    header = ["split", "video_id", *TRAITS, *(f"{trait}_label" for trait in TRAITS)]
    rows = [
        ",".join(["validation", video, *(f"{value:.9g}" for value in (*scores, *labels))])
        for video, scores, labels in zip(VIDEOS, predicted, LABELS)
    ]
    path.write_text("\n".join([",".join(header), *rows]) + "\n", encoding="utf-8")


def _old_run(folder: Path, created: str, label_mean: float, seeds: tuple[int, ...] = (1,)) -> Path:
    """A run folder with the files `fit` wrote before run folders had one module (commit 07361f9), by hand."""
    _write(
        folder / "options.json",
        {"cache": "/data/cache", "out": str(folder), "head": "audio", "epochs": 1, "seeds": list(seeds), "lr": 0.001},
    )
    _write(
        folder / "run.json",
        {
            "created": created,
            "cache": "/data/cache",
            "config_hash": CONFIG_HASH,
            "extraction_config": CONFIG,
            "frames": 4,
            "frames_per_segment": 1,
            "train_split": "train",
            "selection_split": "validation",
            "report_splits": [],
            "videos": {"train": 12, "validation": 2},
            "source_videos": {"train": 12, "validation": 2},
            "unlabelled_left_out": {"train": 0, "validation": 0},
            "selection": "split 'validation'",
            "warning": "warning: this cache's face embeddings came from --weights none (a random ResNet50); its scores say nothing about real faces",
            "seeds": list(seeds),
            "versions": {"keras": "3.15.1", "backend": "tensorflow", "numpy": "2.4.6"},
            "warnings": [],
        },
    )
    np.savez(
        folder / "normalization.npz",
        visual_mean=np.zeros(2048, np.float32),
        visual_std=np.ones(2048, np.float32),
        audio_mean=np.zeros(68, np.float32),
        audio_std=np.ones(68, np.float32),
        label_mean=np.full(5, label_mean, np.float32),
    )
    _write(folder / "metrics.json", {"train": _entry(0.95, "train"), "validation": _entry(0.91, "selection")})
    _write(folder / "training_videos.json", {"split": "train", "videos": {f"{folder.name}.mp4": f"hash-{folder.name}"}})
    _predictions(folder / "predictions.csv", np.full((2, 5), label_mean))
    return folder


def _old_ensemble(folder: Path, members: list[Path], weights: list[float], created: list[str]) -> Path:
    """An ensemble folder with the files `ensemble` wrote before run folders had one module, by hand."""
    _write(
        folder / "ensemble.json",
        {
            "members": [
                {"path": str(member.resolve()), "weight": weight, "created": stamp}
                for member, weight, stamp in zip(members, weights, created)
            ],
            "out": str(folder),
            "weighting": "equal",
            "overwrite": False,
            "train_splits": ["train"],
        },
    )
    _write(
        folder / "run.json",
        {
            "created": "2026-12-02T10:00:00+00:00",
            "cache": "/data/cache",
            "config_hash": CONFIG_HASH,
            "extraction_config": CONFIG,
            "frames": 4,
            "frames_per_segment": 1,
            "videos": {"validation": 2},
            "selection_split": "validation",
            "left_out_splits": {},
            "warning": None,
        },
    )
    _predictions(folder / "predictions.csv", np.full((2, 5), 0.5))
    _write(folder / "metrics.json", {"validation": _entry(0.92, "selection")})
    return folder


@pytest.fixture
def old_folders(tmp_path) -> dict[str, Path]:
    first = _old_run(tmp_path / "runs" / "first", "2026-12-01T10:00:00+00:00", 0.4)
    second = _old_run(tmp_path / "runs" / "second", "2026-12-01T11:00:00+00:00", 0.6, seeds=(1, 2))
    created = ["2026-12-01T10:00:00+00:00", "2026-12-01T11:00:00+00:00"]
    ensemble = _old_ensemble(tmp_path / "runs" / "ens", [first, second], [0.25, 0.75], created)
    return {"first": first, "second": second, "ensemble": ensemble}


def test_runs_and_ensembles_written_before_this_module_open_through_one_interface(old_folders):
    run, ensemble = open_folder(old_folders["first"]), open_folder(old_folders["ensemble"])
    assert (run.kind, ensemble.kind) == ("run", "ensemble")
    for opened in (run, ensemble):
        assert opened.shape == CacheShape(4, 1) and opened.random_weights and opened.cache == "/data/cache"
        assert opened.targets == TRAITS
        assert (opened.selection_split, opened.training_splits) == ("validation", ("train",))
        opened.check_cache(CONFIG, CONFIG_HASH, Path("/data/cache"))
        with pytest.raises(RunError, match=r"frames: 4 -> 8.*use a cache built with"):
            opened.check_cache({**CONFIG, "frames": 8}, "0" * 16, Path("/data/other"))
    np.testing.assert_allclose(run.label_mean, np.full(5, 0.4))
    np.testing.assert_allclose(ensemble.label_mean, np.full(5, 0.25 * 0.4 + 0.75 * 0.6))
    assert run.training_videos() == {"first.mp4": "hash-first"}
    assert ensemble.training_videos() == {"first.mp4": "hash-first", "second.mp4": "hash-second"}
    assert (run.head, run.seeds, ensemble.head, ensemble.seeds) == ("audio", [1], "ensemble", [])
    second = open_folder(old_folders["second"])
    assert second.prediction_folders == [old_folders["second"] / "seed-1", old_folders["second"] / "seed-2"]
    assert ensemble.prediction_folders == [old_folders["ensemble"]]
    assert ensemble.summary_lines() == [
        f"ensemble of {old_folders['first'].resolve()} (weight 0.250), {old_folders['second'].resolve()} (weight 0.750)"
    ]
    audited = read_audited_split(old_folders["ensemble"], "validation")
    assert list(audited.video_ids) == list(VIDEOS)
    np.testing.assert_allclose(audited.baseline, ensemble.label_mean)


def test_compare_lists_old_folders_and_an_ensemble_whose_member_was_trained_again(old_folders):
    run_json = old_folders["second"] / "run.json"
    _write(run_json, {**json.loads(run_json.read_text()), "created": "2026-12-03T09:00:00+00:00"})
    with pytest.raises(RunError, match="was trained again after the ensemble was built"):
        open_folder(old_folders["ensemble"])
    (old_folders["second"] / "predictions.csv").unlink()  # its seeds' predictions are absent too: a warning
    comparison = collect_runs(old_folders["first"].parent, resamples=50)
    kinds = {row["run"]: (row["kind"], row["head"], row["options"]) for row in comparison.rows}
    assert kinds == {
        "ens": ("ensemble", "ensemble", {"weighting": "equal", "members": 2}),
        "first": ("run", "audio", {"epochs": 1, "lr": 0.001}),
        "second": ("run", "audio", {"epochs": 1, "lr": 0.001}),
    }


def test_the_writer_refuses_what_out_holds_and_clears_only_what_it_may(old_folders, tmp_path):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    other = tmp_path / "other"
    _write(other / "notes.json", {})
    refusals = [
        (FolderWriter(a_file, "run"), "is a file, not a run folder"),
        (FolderWriter(a_file, "ensemble"), "is a file, not an ensemble folder"),
        (FolderWriter(other, "run"), "folder is not empty and holds no run"),
        (FolderWriter(other, "ensemble"), "folder is not empty and holds no ensemble"),
        (FolderWriter(old_folders["first"], "ensemble"), "folder is not empty and holds a run"),
        (FolderWriter(old_folders["ensemble"], "run"), "folder is not empty and holds an ensemble"),
        (FolderWriter(old_folders["first"], "run"), "already holds a run; pass `overwrite`"),
        (FolderWriter(old_folders["ensemble"], "ensemble"), "already holds an ensemble; pass `overwrite`"),
    ]
    for writer, message in refusals:
        with pytest.raises(OptionError, match=message):
            writer.refuse_existing(overwrite=False)
    writer = FolderWriter(old_folders["second"], "run")
    writer.refuse_existing(overwrite=True)
    _write(old_folders["second"] / "seed-1" / "metrics.json", {})
    writer.clear(keep=(old_folders["second"] / "seed-1",))
    assert [path.name for path in old_folders["second"].iterdir()] == ["seed-1"]
    FolderWriter(tmp_path / "new" / "run", "run").clear()
    assert (tmp_path / "new" / "run").is_dir()


def test_fit_writes_metrics_json_last(tmp_path, monkeypatch):
    import train.run

    written = []
    write_json = train.run.write_json

    def recording(path, value):
        written.append(Path(path).relative_to(tmp_path / "run").as_posix())
        write_json(path, value)

    monkeypatch.setattr(train.run, "write_json", recording)
    cache = write_synthetic_cache(tmp_path / "cache", {"train": 12, "validation": 6}, frames=4)
    options = FitOptions(cache=str(cache), out=str(tmp_path / "run"), head="audio", epochs=1, audio_units=4, verbose=0)
    fit(options, echo=lambda line: None)
    assert written[-1] == "metrics.json" and "run.json" in written[:-1]


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The project modules a file imports anywhere in it, function-level imports included."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
    return found & modules


def test_no_module_imports_one_that_imports_it_back():
    files = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            files[name.removesuffix(".__init__")] = path
    graph = {name: _imports(path, set(files)) - {name} for name, path in files.items()}
    assert {"train.run", "train.evaluate", "train.ensemble"} <= set(graph)
    # Raises CycleError naming the modules of a cycle, even one hidden in a function-level import.
    list(graphlib.TopologicalSorter(graph).static_order())
