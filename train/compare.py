"""One table of every run under a folder, best validation score first."""

from __future__ import annotations

import json
from pathlib import Path

from train.config import FitOptions
from train.metrics import aligned, format_number
from train.run import METRICS_FILE, OPTIONS_FILE, RUN_FILE, RANDOM_WEIGHTS, RunError, read_json

REPORTED_SPLITS = ("validation", "test")


def _run_folders(root: Path) -> list[Path]:
    """Folders holding options.json under root, except the per-seed runs inside a run."""
    folders = sorted(path.parent for path in root.rglob(OPTIONS_FILE))
    runs = set(folders)
    return [folder for folder in folders if not any(parent in runs for parent in folder.parents)]


def collect_runs(root: Path) -> tuple[list[dict], list[str]]:
    """Summaries of the finished runs under ``root``, best validation score first.

    Parameters
    ----------
    root : Path
        A runs folder (or a single run).

    Returns
    -------
    (list of dict, list of str)
        One row per finished run: ``run`` (path relative to root), ``head``,
        ``lr``, ``batch_size``, ``seeds``, ``options`` (other non-default options),
        per reported split ``<split>`` / ``<split>_std`` / ``<split>_baseline``
        mean accuracies (None when absent), ``date``, ``random_weights``; and the
        folders skipped because they hold no metrics.json yet.
    """
    root = Path(root)
    if not root.is_dir():
        raise RunError(f"{root}: no such folder")
    rows, unfinished = [], []
    for folder in _run_folders(root):
        if not (folder / METRICS_FILE).exists():
            unfinished.append(str(folder))
            continue
        options = FitOptions.from_dict(read_json(folder / OPTIONS_FILE))
        info = read_json(folder / RUN_FILE)
        metrics = read_json(folder / METRICS_FILE)
        row = {
            "run": str(folder.relative_to(root)) if folder != root else folder.name,
            "head": options.head,
            "lr": options.lr,
            "batch_size": options.batch_size,
            "seeds": list(options.run_seeds),
            "options": {key: value for key, value in options.changed().items() if key not in ("lr", "batch_size")},
        }
        for split in REPORTED_SPLITS:
            entry = metrics.get(split, {})
            row[split] = entry.get("mean_accuracy")
            row[f"{split}_std"] = entry.get("mean_accuracy_std")
            row[f"{split}_baseline"] = entry.get("baseline_mean_accuracy")
        row["date"] = info.get("created", "")
        row["random_weights"] = info.get("extraction_config", {}).get("weights") == RANDOM_WEIGHTS
        rows.append(row)
    rows.sort(key=lambda row: (row["validation"] is None, -(row["validation"] or 0.0)))
    return rows, unfinished


def format_runs(rows: list[dict]) -> str:
    """The compare table; runs whose embeddings came from random weights are starred."""
    header = ("run", "head", "lr", "batch", "seeds", "val acc", "baseline", "test acc", "baseline", "date", "other options")
    table = [header]
    for row in rows:
        table.append(
            (
                row["run"] + (" *" if row["random_weights"] else ""),
                row["head"],
                f"{row['lr']:g}",
                str(row["batch_size"]),
                ",".join(map(str, row["seeds"])),
                format_number(row["validation"], row["validation_std"], missing="-"),
                format_number(row["validation_baseline"], None, missing="-"),
                format_number(row["test"], row["test_std"], missing="-"),
                format_number(row["test_baseline"], None, missing="-"),
                row["date"][:16].replace("T", " "),
                " ".join(f"{key}={value}" for key, value in row["options"].items()) or "-",
            )
        )
    text = aligned(table, left=(0, 1, len(header) - 1))
    if any(row["random_weights"] for row in rows):
        text += "\n* embeddings from --weights none (a random ResNet50): scores say nothing about real faces"
    return text


def runs_json(rows: list[dict]) -> str:
    """The compare rows as a JSON array."""
    return json.dumps(rows, indent=1)
