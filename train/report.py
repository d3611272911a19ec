"""Files that describe a finished run: curves.png and a combined history.csv."""

from __future__ import annotations

import csv
from pathlib import Path

CURVES = (("loss", "loss (MSE)"), ("mean_accuracy", "mean accuracy (1 - MAE)"))


def read_history(path: Path) -> list[dict[str, str]]:
    """Rows of a Keras CSVLogger file."""
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def write_combined_history(histories: dict[int, list[dict[str, str]]], path: Path) -> None:
    """One CSV of several seeds' histories, with a leading ``seed`` column."""
    columns = ["seed"] + list(dict.fromkeys(column for rows in histories.values() for row in rows for column in row))
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, columns)
        writer.writeheader()
        for seed, rows in histories.items():
            for row in rows:
                writer.writerow({"seed": seed, **row})


def plot_curves(
    histories: dict[int, list[dict[str, str]]], path: Path, title: str, baselines: dict[str, float], selection_name: str
) -> None:
    """Loss and mean accuracy per epoch, training and selection split, one line per seed.

    Parameters
    ----------
    histories : dict
        seed -> CSVLogger rows (``epoch``, ``loss``, ``val_loss``, ``mean_accuracy``,
        ``val_mean_accuracy``, ...).
    path : Path
        PNG to write.
    title : str
        Figure title.
    baselines : dict
        ``loss`` and ``mean_accuracy`` of predicting the training mean on the
        selection videos, drawn as horizontal lines.
    selection_name : str
        The split the ``val_`` columns were measured on, for the legend.
    """
    import matplotlib

    matplotlib.use("Agg")  # files only: never needs a display
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(1, len(CURVES), figsize=(11, 4))
    for axis, (metric, label) in zip(axes, CURVES):
        for seed, rows in histories.items():
            suffix = f" (seed {seed})" if len(histories) > 1 else ""
            epochs = [int(row["epoch"]) + 1 for row in rows]
            axis.plot(epochs, [float(row[metric]) for row in rows], label=f"train{suffix}")
            axis.plot(
                epochs, [float(row[f"val_{metric}"]) for row in rows], linestyle="--", label=f"{selection_name}{suffix}"
            )
        axis.axhline(baselines[metric], color="grey", linestyle=":", label=f"{selection_name} baseline (training mean)")
        axis.set_xlabel("epoch")
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
        axis.legend(fontsize="small")
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    pyplot.close(figure)
