"""``python -m train fit|sweep|ensemble|evaluate|compare|predict``: flags mapped onto the stage's functions."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from cache.errors import CacheError, LabelError
from train.config import HEADS, FitOptions

# Plain click help (no rich panels): long flags get their own line instead of squeezing
# every description, and text wraps at the terminal width up to 120 columns.
app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode=None,
    context_settings={"max_content_width": 120},
    help="Train, compare, evaluate and use Big Five heads from a feature cache.",
)
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
        raise typer.BadParameter(
            f"expected comma-separated integers such as 1,2,3, got {text!r}", param_hint="--seeds"
        ) from None


@app.command()
def fit(
    cache: Path = typer.Option(Path(DEFAULTS.cache), metavar="DIR", help="Cache folder to train from."),
    out: Path = typer.Option(Path(DEFAULTS.out), metavar="DIR", help="Run folder to write (runs/<name>)."),
    head: str = typer.Option(DEFAULTS.head, metavar="NAME", help=f"Head: {', '.join(HEADS)}."),
    epochs: int = typer.Option(DEFAULTS.epochs, metavar="N", help="Most epochs; early stopping usually ends sooner."),
    lr: float = typer.Option(DEFAULTS.lr, metavar="RATE", help="Adam learning rate."),
    batch_size: int = typer.Option(DEFAULTS.batch_size, metavar="N", help="Videos per training step."),
    seed: int = typer.Option(
        DEFAULTS.seed, metavar="N", help="Seed of a single run (weights, dropout, shuffling, frame picks)."
    ),
    seeds: str = typer.Option(
        "", metavar="N,N,...", help="Comma-separated seeds, e.g. 1,2,3: one run per seed, reported as mean and std."
    ),
    visual_units: int = typer.Option(
        DEFAULTS.visual_units, metavar="N", help="Width of the first per-frame Dense on the face embedding."
    ),
    visual_projection: int = typer.Option(
        DEFAULTS.visual_projection, metavar="N", help="Width of the second (linear) per-frame Dense."
    ),
    dropout: float = typer.Option(DEFAULTS.dropout, metavar="RATE", help="Dropout after the visual projection."),
    audio_units: int = typer.Option(
        DEFAULTS.audio_units, metavar="N", help="Width of the per-segment Dense on the audio features."
    ),
    lstm_units: int = typer.Option(DEFAULTS.lstm_units, metavar="N", help="LSTM units (per direction for bilstm)."),
    attention_units: int = typer.Option(
        DEFAULTS.attention_units, metavar="N", help="Scoring width of the attention head."
    ),
    patience: int = typer.Option(DEFAULTS.patience, metavar="EPOCHS", help="EarlyStopping patience."),
    lr_patience: int = typer.Option(DEFAULTS.lr_patience, metavar="EPOCHS", help="ReduceLROnPlateau patience."),
    lr_factor: float = typer.Option(DEFAULTS.lr_factor, metavar="FACTOR", help="ReduceLROnPlateau factor."),
    min_lr: float = typer.Option(DEFAULTS.min_lr, metavar="RATE", help="ReduceLROnPlateau floor."),
    train_split: str = typer.Option(
        DEFAULTS.train_split,
        metavar="NAME",
        help="Split to fit on; the default falls back to a cache's only labelled split.",
    ),
    validation_split: str = typer.Option(
        DEFAULTS.validation_split,
        metavar="NAME",
        help="Split that selects the best epoch and early-stops; without the default split, a share of the training videos is held out.",
    ),
    validation_fraction: float = typer.Option(
        DEFAULTS.validation_fraction,
        metavar="SHARE",
        help="Share of the training split's source videos held out when there is no validation split.",
    ),
    holdout_seed: int = typer.Option(DEFAULTS.holdout_seed, metavar="N", help="Seed of that hold-out draw."),
    source_delimiter: str = typer.Option(
        DEFAULTS.source_delimiter,
        metavar="TEXT",
        help="A video's source is its id up to the first TEXT (ChaLearn: _01AyUz9J9I.002.mp4 -> _01AyUz9J9I); a hold-out keeps each source's clips on one side. Empty: each video is its own source.",
    ),
    mixed_precision: bool = typer.Option(
        DEFAULTS.mixed_precision,
        "--mixed-precision/--no-mixed-precision",
        help="Compute in float16 (mixed_float16 policy).",
    ),
    tensorboard: bool = typer.Option(
        DEFAULTS.tensorboard, "--tensorboard/--no-tensorboard", help="Also write TensorBoard logs under OUT/logs."
    ),
    overwrite: bool = typer.Option(
        DEFAULTS.overwrite, "--overwrite/--no-overwrite", help="Replace a run already in OUT."
    ),
    verbose: int = typer.Option(
        DEFAULTS.verbose, metavar="0|1|2", help="Keras output: 0 silent, 1 progress bar, 2 a line per epoch."
    ),
) -> None:
    """Train a head from a cache into a run folder and print its scores.

    Prints which splits it trains, selects and reports on (videos and source videos), and warns when the run cannot
    be useful. A split name the cache lacks is a usage error (exit 2).
    """
    flags = {
        **locals(),
        "cache": str(cache),
        "out": str(out),
        "seeds": _parse_seeds(seeds),
    }  # one flag per FitOptions field
    from train.fit import fit as fit_run

    try:
        options = FitOptions(**flags)
    except ValueError as error:
        raise _fail(error, code=2) from None
    from train.data import SplitNameError

    try:
        fit_run(options, echo=typer.echo)
    except SplitNameError as error:
        raise _fail(error, code=2) from None
    except _expected_errors() as error:
        raise _fail(error) from None


@app.command()
def evaluate(
    run: Path = typer.Argument(..., help="Run folder written by `fit` (or `ensemble`)."),
    cache: Path = typer.Option(None, help="Cache folder; default the one the run was trained on."),
    split: list[str] = typer.Option(None, help="Split to score (repeatable); default every labelled split."),
    as_json: bool = typer.Option(False, "--json", help="Print the scores as JSON instead of tables."),
) -> None:
    """Score a run on splits of a cache built with the same extraction config."""
    from train.ensemble import Ensemble, open_run_or_ensemble
    from train.evaluate import evaluate as evaluate_run
    from train.metrics import format_table

    try:
        cache_path = cache or Path(open_run_or_ensemble(run).info["cache"])
        opened, metrics = evaluate_run(run, cache_path, tuple(split) if split else None)
    except _expected_errors() as error:
        raise _fail(error) from None
    warning = opened.info.get("warning")
    if as_json:
        typer.echo(json.dumps(metrics, indent=1))
    else:
        typer.echo(f"{run} on {cache_path} (baseline: the run's training-split mean)")
        if isinstance(opened, Ensemble):
            typer.echo(
                "ensemble of "
                + ", ".join(
                    f"{member.path} (weight {weight:.3f})" for member, weight in zip(opened.members, opened.weights)
                )
            )
        if "selected_seed" in opened.info:
            typer.echo(
                f"scoring the model of seed {opened.info['selected_seed']}, the best of seeds {', '.join(map(str, opened.info['seeds']))} on validation"
            )
        typer.echo(format_table(metrics))
    if warning:
        typer.echo(warning, err=as_json)


def _print_comparison(folder: Path, as_json: bool, plot: Path | None, resamples: int | None) -> None:
    """The compare table (or JSON) of the runs under folder, its warnings, and the optional plot."""
    from train.compare import collect_runs, format_runs, plot_runs, runs_json

    settings = {} if resamples is None else {"resamples": resamples}
    try:
        comparison = collect_runs(folder, **settings)
    except _expected_errors() as error:
        raise _fail(error) from None
    if as_json:
        typer.echo(runs_json(comparison))
    elif comparison.rows:
        typer.echo(format_runs(comparison))
    else:
        typer.echo(f"no finished runs under {folder}")
    for line in comparison.warnings:
        typer.echo(line, err=True)
    for path in comparison.unfinished:
        typer.echo(f"skipped {path}: no metrics.json (unfinished run)", err=True)
    if plot is not None and comparison.rows:
        plot_runs(comparison, plot, **settings)
        typer.echo(f"plot saved to {plot}", err=True)


RESAMPLES_HELP = "Bootstrap resamples of the videos for the 95% intervals and p-values (default 9999)."


@app.command()
def compare(
    folder: Path = typer.Argument(
        Path("runs"), metavar="FOLDER", help="Folder of runs and ensembles (or one of them)."
    ),
    as_json: bool = typer.Option(
        False, "--json", help="Print the rows as JSON (per split: ci95, p_value_vs_best, ...) instead of a table."
    ),
    plot: Path = typer.Option(
        None,
        metavar="FILE.png",
        help="Also draw per-trait mean accuracy with 95% intervals beside the baselines into this PNG.",
    ),
    resamples: int = typer.Option(None, min=100, metavar="N", help=RESAMPLES_HELP),
) -> None:
    """One table of every run under FOLDER, best first by the split that selected each model.

    Each split's mean accuracy comes with a bootstrap 95% interval over videos, a
    paired bootstrap p-value against the best run, and the training-mean baseline.
    """
    _print_comparison(folder, as_json, plot, resamples)


@app.command()
def sweep(
    cache: Path = typer.Option(Path(DEFAULTS.cache), metavar="DIR", help="Cache folder every run reads."),
    out: Path = typer.Option(..., metavar="DIR", help="Sweep folder (runs/<name>): one run folder per configuration."),
    grid: list[str] = typer.Option(
        None,
        metavar="OPTION=V1,V2",
        help="OPTION=V1,V2: one axis over any fit option (repeatable), e.g. --grid head=seed,bilstm --grid lr=1e-3,1e-4.",
    ),
    seeds: str = typer.Option(
        "", metavar="N,N,...", help="Comma-separated seeds of every configuration, e.g. 1,2,3: reported as mean ± std."
    ),
    search: str = typer.Option(
        "grid",
        metavar="grid|random",
        help="grid: every configuration; random: --trials of them, drawn with --search-seed.",
    ),
    trials: int = typer.Option(0, metavar="N", help="Configurations a random search draws (0: all)."),
    search_seed: int = typer.Option(
        0, metavar="N", help="Seed of the random draw; the same seed draws the same configurations, so a rerun resumes."
    ),
    jobs: int = typer.Option(
        1, metavar="N", help="Configurations fitted at once, each in its own process with its share of the cores."
    ),
    resamples: int = typer.Option(None, min=100, metavar="N", help=RESAMPLES_HELP),
) -> None:
    """Fit one run per configuration of a grid into OUT, then print the compare table.

    Run the same command again after a kill or Ctrl-C: finished runs are kept as
    they are, half-written ones are fitted again.
    """
    from train.sweep import SweepError, SweepOptions, parse_grid
    from train.sweep import sweep as run_sweep

    try:
        options = SweepOptions(
            str(cache), str(out), parse_grid(grid or []), _parse_seeds(seeds), search, trials, search_seed, jobs
        )
    except SweepError as error:
        raise _fail(error, code=2) from None
    try:
        results = run_sweep(options, echo=typer.echo)
    except SweepError as error:
        raise _fail(error, code=2) from None
    except KeyboardInterrupt:
        typer.echo(f"interrupted: finished runs under {out} are kept; run the same command to resume", err=True)
        raise typer.Exit(130) from None
    typer.echo("")
    _print_comparison(out, False, None, resamples)
    failed = [result for result in results if "error" in result]
    if failed:
        typer.echo(
            f"error: {len(failed)} configuration(s) failed (reasons above); fix them and run the same command again",
            err=True,
        )
        raise typer.Exit(1)


@app.command()
def ensemble(
    runs: list[Path] = typer.Argument(
        ..., metavar="RUN...", help="Run folders to average (two or more, from caches with one extraction config)."
    ),
    out: Path = typer.Option(..., metavar="DIR", help="Ensemble folder to write (runs/<name>)."),
    weighting: str = typer.Option(
        "equal",
        metavar="equal|validation",
        help="equal, or validation: each run weighted by its gain over the baseline on its selection split.",
    ),
    overwrite: bool = typer.Option(False, "--overwrite/--no-overwrite", help="Replace an ensemble already in OUT."),
) -> None:
    """Average the runs' predictions into an ensemble folder and print its scores.

    `evaluate`, `predict` and `compare` accept the ensemble folder wherever they accept a run.
    """
    from train.ensemble import EnsembleOptions, build_ensemble
    from train.predictions import PredictionsError

    try:
        options = EnsembleOptions(tuple(str(run) for run in runs), str(out), weighting, overwrite)
    except ValueError as error:
        raise _fail(error, code=2) from None
    try:
        build_ensemble(options, echo=typer.echo)
    except (*_expected_errors(), PredictionsError) as error:
        raise _fail(error) from None


@app.command()
def predict(
    run: Path = typer.Argument(..., help="Run folder written by `fit` (or `ensemble`)."),
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
