"""``python -m train fit|sweep|ensemble|evaluate|compare|predict|audit``: flags mapped onto the stage's functions."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from common.command import PlainHelp, reports_errors, with_flags
from common.errors import ExitCode
from train.audit import AuditOptions
from train.config import FitOptions
from train.ensemble import EnsembleOptions, build_ensemble
from train.sweep import SweepOptions, fixed_options, sweep_flags
from train.sweep import sweep as run_sweep

# Plain click help (no rich panels): long flags get their own line instead of squeezing
# every description, and text wraps at the terminal width up to 120 columns.
app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode=None,
    context_settings={"max_content_width": 120},
    help="Train, compare, evaluate and use Big Five heads from a feature cache.",
)


@app.command(cls=PlainHelp)
@reports_errors
@with_flags(FitOptions)
def fit(options: FitOptions = None) -> None:
    """Train a head from a cache into a run folder and print its scores.

    Prints which splits it trains, selects and reports on (videos and source videos), and warns when the run cannot
    be useful. A refusal (a bad option, a split name the cache lacks, a missing cache, a run in OUT without
    --overwrite) is a usage error (exit 2).
    """
    from train.fit import fit as fit_run

    fit_run(options, echo=typer.echo)


@app.command(cls=PlainHelp)
@reports_errors
def evaluate(
    run: Path = typer.Argument(..., help="Run folder written by `fit` (or `ensemble`)."),
    cache: Path = typer.Option(None, metavar="DIR", help="Cache folder; default the one the run was trained on."),
    split: list[str] = typer.Option(
        None, metavar="NAME", help="Split to score (repeatable); default every labelled split."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the scores as JSON instead of tables."),
) -> None:
    """Score a run on splits of a cache built with the same extraction config."""
    from train.evaluate import evaluate as evaluate_run
    from train.metrics import format_table
    from train.run import open_folder

    cache_path = cache or Path(open_folder(run).cache)
    opened, metrics, leaks = evaluate_run(run, cache_path, tuple(split) if split else None)
    warning = opened.warning
    if as_json:
        typer.echo(json.dumps(metrics, indent=1))
    else:
        typer.echo(f"{run} on {cache_path} (baseline: the run's training-split mean)")
        for line in opened.summary_lines():
            typer.echo(line)
        typer.echo(format_table(metrics))
    for line in ([warning] if warning else []) + leaks:
        typer.echo(line, err=as_json)


def _print_comparison(
    folders: list[Path], as_json: bool, plot: Path | None, resamples: int | None, groups: list[Path] | None = None
) -> None:
    """The compare table (or JSON) of the runs under folders, its warnings, and the optional plot."""
    from train.compare import add_groups, collect_runs, format_groups, format_runs, plot_runs, runs_json

    settings = {} if resamples is None else {"resamples": resamples}
    table = _read_groups(groups)
    comparison = collect_runs(folders, **settings)
    if table is not None:
        add_groups(comparison, table, **settings)
    if as_json:
        typer.echo(runs_json(comparison))
    elif comparison.rows:
        typer.echo(format_runs(comparison))
        if table is not None:
            typer.echo("\n" + format_groups(comparison))
    else:
        typer.echo(f"no finished runs under {', '.join(map(str, folders))}")
    for line in comparison.warnings:
        typer.echo(line, err=True)
    for path in comparison.unfinished:
        typer.echo(f"skipped {path}: no metrics.json (unfinished run)", err=True)
    if plot is not None and comparison.rows:
        plot_runs(comparison, plot, **settings)
        typer.echo(f"plot saved to {plot}", err=True)


def _read_groups(paths: list[Path] | None):
    """The groups files of ``compare --groups``, read before any run is (a bad file is refused first)."""
    from train.groups import read_groups

    return read_groups(paths) if paths else None


RESAMPLES_HELP = "Bootstrap resamples of the videos for the 95% intervals and p-values (default 9999)."


@app.command(cls=PlainHelp)
@reports_errors
def compare(
    folders: list[Path] = typer.Argument(
        None,
        metavar="FOLDER...",
        help="Run, ensemble or sweep folders, or folders holding them, in any mix (default runs).",
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
    groups: list[Path] = typer.Option(
        None,
        metavar="FILE",
        help="Groups file (as `audit` reads it; repeatable): add each split's worst group and largest gap between"
        " groups (JSON: groups).",
    ),
) -> None:
    """One table of every run under the FOLDERs, best first by the split that selected each model.

    A run found under several FOLDERs counts once; name your own folders to leave out others (such as the demo's).

    Each split's mean accuracy comes with a bootstrap 95% interval over videos, a
    paired bootstrap p-value against the best run, and the training-mean baseline.
    """
    _print_comparison(folders or [Path("runs")], as_json, plot, resamples, groups)


@app.command(cls=PlainHelp)
@reports_errors
@with_flags(sweep_flags())
def sweep(
    context: typer.Context,
    out: str = typer.Option(..., metavar="DIR", help="Sweep folder (runs/<name>): one run folder per configuration."),
    grid: list[str] = typer.Option(
        [],
        metavar="OPTION=V1,V2",
        help="OPTION=V1,V2: one axis over any fit option (repeatable), e.g. --grid head=seed,bilstm --grid lr=1e-3,1e-4.",
    ),
    resamples: int = typer.Option(None, min=100, metavar="N", help=RESAMPLES_HELP),
    options: object = None,
) -> None:
    """Fit one run per configuration of a grid into OUT, then print the compare table.

    Every fit option not on a grid axis can be given as a fixed value (--epochs 40), the same for every configuration.
    Run the same command again after a kill or Ctrl-C: finished runs are kept as they are, half-written ones are fitted
    again, keeping the seeds they had finished. Exit 1 when a configuration failed.
    """
    # Typer carries its own copy of click, so the parameter source is told by name.
    given = [
        name for name in fixed_options() if context.get_parameter_source(name).name in ("COMMANDLINE", "ENVIRONMENT")
    ]
    options = SweepOptions.from_flags(options, given)
    try:
        results = run_sweep(options, echo=typer.echo)
    except KeyboardInterrupt:
        typer.echo(f"interrupted: finished runs under {options.out} are kept; run the same command to resume", err=True)
        raise typer.Exit(ExitCode.INTERRUPTED) from None
    typer.echo("")
    _print_comparison([Path(options.out)], False, None, resamples)
    failed = [result for result in results if "error" in result]
    if failed:
        typer.echo(
            f"error: {len(failed)} configuration(s) failed (reasons above); fix them and run the same command again",
            err=True,
        )
        raise typer.Exit(ExitCode.PARTIAL)


@app.command(cls=PlainHelp)
@reports_errors
@with_flags(EnsembleOptions)
def ensemble(
    members: list[str] = typer.Argument(
        ..., metavar="RUN...", help="Run folders to average (two or more, from caches with one extraction config)."
    ),
    out: str = typer.Option(..., metavar="DIR", help="Ensemble folder to write (runs/<name>)."),
    options: EnsembleOptions = None,
) -> None:
    """Average the runs' predictions into an ensemble folder and print its scores.

    `evaluate`, `predict` and `compare` accept the ensemble folder wherever they accept a run.
    """
    build_ensemble(options, echo=typer.echo)


@app.command(cls=PlainHelp)
@reports_errors
def predict(
    run: Path = typer.Argument(..., help="Run folder written by `fit` (or `ensemble`)."),
    videos: list[Path] = typer.Argument(..., metavar="VIDEO...", help="Video files."),
    out: Path = typer.Option(None, metavar="FILE.csv", help="CSV to write; default standard output."),
    weights: list[str] = typer.Option(
        None,
        metavar="SET=FILE",
        help="The weights file a set of the run was added with (`extract add --weights FILE`), checked against its"
        " recorded SHA-256; repeat for each such set.",
    ),
) -> None:
    """Big Five scores for new videos, extracted exactly as the run's cache was.

    Computes every feature set the run reads from each video. Writes one row per video
    (video_id and the five traits in [0, 1]). A video that cannot be decoded gets an
    error line on standard error and the exit status is 1; the others are still predicted.
    """
    from train.predict import predict_videos, predictions_csv, weights_files

    predictions = predict_videos(run, videos, weights_files(weights or []))
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
        raise typer.Exit(ExitCode.PARTIAL)


@app.command(cls=PlainHelp)
@reports_errors
@with_flags(AuditOptions)
def audit(
    run: str = typer.Argument(..., metavar="RUN", help="Run or ensemble folder."),
    groups: list[str] = typer.Option(
        ...,
        metavar="FILE",
        help="Groups file: ChaLearn's eth_gender_annotations_*.csv as shipped, or a CSV with video_id and group"
        " columns (repeatable).",
    ),
    options: AuditOptions = None,
) -> None:
    """Per-group accuracy with 95% intervals, signed error per trait, and the largest gap with its p-value.

    Reads the run's saved predictions of one split (default test); writes audit.json into the run folder (or OUT).
    A groups file that matches no video of the split, is not CSV, or has a column with one group is refused
    (exit 2, nothing written).
    """
    from train.audit import audit as audit_run

    audit_run(options, echo=typer.echo)
