"""``python -m train fit|evaluate|compare|predict``: flags mapped onto the stage's functions."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from cache.errors import CacheError, LabelError
from train.config import HEADS, FitOptions

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Train, compare, evaluate and use Big Five heads from a feature cache.")
DEFAULTS = FitOptions()


def _fail(error: Exception, code: int = 1) -> typer.Exit:
    typer.echo(f"error: {error}", err=True)
    return typer.Exit(code)


def _expected_errors() -> tuple[type[Exception], ...]:
    from train.data import DataError
    from train.run import RunError

    return (RunError, CacheError, LabelError, DataError)


def _parse_seeds(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise typer.BadParameter(f"expected comma-separated integers such as 1,2,3, got {text!r}", param_hint="--seeds") from None


@app.command()
def fit(
    cache: Path = typer.Option(Path(DEFAULTS.cache), help="Cache folder to train from."),
    out: Path = typer.Option(Path(DEFAULTS.out), help="Run folder to write (runs/<name>)."),
    head: str = typer.Option(DEFAULTS.head, help=f"Head: {', '.join(HEADS)}."),
    epochs: int = typer.Option(DEFAULTS.epochs, help="Most epochs; early stopping usually ends sooner."),
    lr: float = typer.Option(DEFAULTS.lr, help="Adam learning rate."),
    batch_size: int = typer.Option(DEFAULTS.batch_size, help="Videos per training step."),
    seed: int = typer.Option(DEFAULTS.seed, help="Seed of a single run (weights, dropout, shuffling, frame picks)."),
    seeds: str = typer.Option("", help="Comma-separated seeds, e.g. 1,2,3: one run per seed, reported as mean and std."),
    visual_units: int = typer.Option(DEFAULTS.visual_units, help="Width of the first per-frame Dense on the face embedding."),
    visual_projection: int = typer.Option(DEFAULTS.visual_projection, help="Width of the second (linear) per-frame Dense."),
    dropout: float = typer.Option(DEFAULTS.dropout, help="Dropout after the visual projection."),
    audio_units: int = typer.Option(DEFAULTS.audio_units, help="Width of the per-segment Dense on the audio features."),
    lstm_units: int = typer.Option(DEFAULTS.lstm_units, help="LSTM units (per direction for bilstm)."),
    attention_units: int = typer.Option(DEFAULTS.attention_units, help="Scoring width of the attention head."),
    patience: int = typer.Option(DEFAULTS.patience, help="EarlyStopping patience (epochs)."),
    lr_patience: int = typer.Option(DEFAULTS.lr_patience, help="ReduceLROnPlateau patience (epochs)."),
    lr_factor: float = typer.Option(DEFAULTS.lr_factor, help="ReduceLROnPlateau factor."),
    min_lr: float = typer.Option(DEFAULTS.min_lr, help="ReduceLROnPlateau floor."),
    train_split: str = typer.Option(DEFAULTS.train_split, help="Split to fit on."),
    validation_split: str = typer.Option(DEFAULTS.validation_split, help="Split to select and early-stop on."),
    validation_fraction: float = typer.Option(DEFAULTS.validation_fraction, help="Held-out fraction of the training split when there is no validation split."),
    holdout_seed: int = typer.Option(DEFAULTS.holdout_seed, help="Seed of that hold-out draw."),
    mixed_precision: bool = typer.Option(DEFAULTS.mixed_precision, "--mixed-precision/--no-mixed-precision", help="Compute in float16 (mixed_float16 policy)."),
    tensorboard: bool = typer.Option(DEFAULTS.tensorboard, "--tensorboard/--no-tensorboard", help="Also write TensorBoard logs under OUT/logs."),
    overwrite: bool = typer.Option(DEFAULTS.overwrite, "--overwrite/--no-overwrite", help="Replace a run already in OUT."),
    verbose: int = typer.Option(DEFAULTS.verbose, help="Keras output: 0 silent, 1 progress bar, 2 a line per epoch."),
) -> None:
    """Train a head from a cache into a run folder and print its scores."""
    flags = {**locals(), "cache": str(cache), "out": str(out), "seeds": _parse_seeds(seeds)}  # one flag per FitOptions field
    from train.fit import fit as fit_run

    try:
        options = FitOptions(**flags)
    except ValueError as error:
        raise _fail(error, code=2) from None
    try:
        fit_run(options, echo=typer.echo)
    except _expected_errors() as error:
        raise _fail(error) from None


@app.command()
def evaluate(
    run: Path = typer.Argument(..., help="Run folder written by `fit`."),
    cache: Path = typer.Option(None, help="Cache folder; default the one the run was trained on."),
    split: list[str] = typer.Option(None, help="Split to score (repeatable); default every labelled split."),
    as_json: bool = typer.Option(False, "--json", help="Print the scores as JSON instead of tables."),
) -> None:
    """Score a run on splits of a cache built with the same extraction config."""
    from train.evaluate import evaluate as evaluate_run
    from train.metrics import format_table
    from train.run import open_run

    try:
        cache_path = cache or Path(open_run(run).info["cache"])
        opened, metrics = evaluate_run(run, cache_path, tuple(split) if split else None)
    except _expected_errors() as error:
        raise _fail(error) from None
    warning = opened.info.get("warning")
    if as_json:
        typer.echo(json.dumps(metrics, indent=1))
    else:
        typer.echo(f"{run} on {cache_path} (baseline: the run's training-split mean)")
        if "selected_seed" in opened.info:
            typer.echo(f"scoring the model of seed {opened.info['selected_seed']}, the best of seeds {', '.join(map(str, opened.info['seeds']))} on validation")
        typer.echo(format_table(metrics))
    if warning:
        typer.echo(warning, err=as_json)


@app.command()
def compare(
    folder: Path = typer.Argument(Path("runs"), help="Folder of runs."),
    as_json: bool = typer.Option(False, "--json", help="Print the rows as JSON instead of a table."),
) -> None:
    """One table of every run under FOLDER, best validation mean accuracy first."""
    from train.compare import collect_runs, format_runs, runs_json

    try:
        rows, unfinished = collect_runs(folder)
    except _expected_errors() as error:
        raise _fail(error) from None
    if as_json:
        typer.echo(runs_json(rows))
    elif rows:
        typer.echo(format_runs(rows))
    else:
        typer.echo(f"no finished runs under {folder}")
    for path in unfinished:
        typer.echo(f"skipped {path}: no metrics.json (unfinished run)", err=True)


@app.command()
def predict(
    run: Path = typer.Argument(..., help="Run folder written by `fit`."),
    videos: list[Path] = typer.Argument(..., help="Video files."),
    out: Path = typer.Option(None, help="CSV to write; default standard output."),
) -> None:
    """Big Five scores for new videos, extracted exactly as the run's cache was.

    Writes one row per video (video_id and the five traits in [0, 1]). A video that
    cannot be decoded gets an error line on standard error and the exit status is
    1; the others are still predicted.
    """
    from train.predict import predict_videos, predictions_csv

    try:
        predictions = predict_videos(run, videos)
    except _expected_errors() as error:
        raise _fail(error) from None
    text = predictions_csv(predictions)
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text, encoding="utf-8")
        typer.echo(f"{out}: {len(predictions.video_ids)} videos", err=True)
    if predictions.warning:
        typer.echo(predictions.warning, err=True)
    for path, reason in predictions.failures:
        typer.echo(f"error: {path}: {reason}", err=True)
    if predictions.failures:
        raise typer.Exit(1)
