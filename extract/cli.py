"""``python -m extract INPUT... --cache DIR``: decode and featurise videos once;
``python -m extract add CACHE --features SETS``: add feature sets from what a cache stored."""

from __future__ import annotations

from pathlib import Path

import typer

from cache.schema import DEFAULT_CACHE
from common.command import PlainHelp, reports_errors, with_flags
from common.errors import ExitCode
from common.quiet import show_everything
from extract.adding import AddOptions, add_sets
from extract.config import ExtractOptions
from extract.run import extract_to_cache

FAILURES_SHOWN = 5  # failure reasons printed on the terminal; the rest are in failures.csv

ADD_COMMAND = "add"

app = typer.Typer(add_completion=False, rich_markup_mode=None, context_settings={"max_content_width": 120})
add_app = typer.Typer(add_completion=False, rich_markup_mode=None, context_settings={"max_content_width": 120})


@app.command(
    cls=PlainHelp, help="Extract videos (files or folders; SPLIT=PATH names the split) into an HDF5 feature cache."
)
@reports_errors
@with_flags(ExtractOptions)
def main(
    inputs: list[str] = typer.Argument(
        ...,
        metavar="[SPLIT=]PATH...",
        help="Video files or folders; SPLIT=PATH sets the split, else the folder's name.",
        show_default=False,
    ),
    cache: Path = typer.Option(
        Path(DEFAULT_CACHE), "--cache", metavar="FOLDER", help="Cache folder (created if missing)."
    ),
    labels: list[Path] = typer.Option(
        [], "--labels", metavar="FILE", help="ChaLearn annotation .pkl or CSV (video_id + trait columns); repeatable."
    ),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
    verbose: bool = typer.Option(
        False, "--verbose", help="Also show TensorFlow's start-up messages (or set TRAITCACHE_VERBOSE=1)."
    ),
    options: ExtractOptions = None,
) -> None:
    if verbose:
        show_everything()
    try:
        summary = extract_to_cache(inputs, cache, labels, options, show_progress=not quiet)
    except KeyboardInterrupt as interrupt:
        typer.echo(
            f"stopped at once by a second Ctrl-C: the videos in flight are lost, finished shards are kept in {cache}; run the same command again to resume",
            err=True,
        )
        raise typer.Exit(ExitCode.INTERRUPTED) from interrupt
    for warning in summary.warnings:
        typer.echo(f"warning: {warning}", err=True)
    for failure in summary.failures[:FAILURES_SHOWN]:
        typer.echo(f"failed: {failure.path}: {failure.reason}", err=True)
    if len(summary.failures) > FAILURES_SHOWN:
        typer.echo(f"... and {len(summary.failures) - FAILURES_SHOWN} more in {summary.failures_file}", err=True)
    typer.echo(summary.line())
    if summary.interrupted:
        typer.echo(f"interrupted: finished videos are kept in {cache}; run the same command again to resume", err=True)
        raise typer.Exit(ExitCode.INTERRUPTED)
    if summary.failures:
        raise typer.Exit(ExitCode.PARTIAL)


@add_app.command(
    cls=PlainHelp,
    help="Add feature sets (SOURCE:EXTRACTOR) to every video of a cache, from its stored crops, frames and sound track.",
)
@reports_errors
@with_flags(AddOptions)
def add(
    cache: Path = typer.Argument(..., metavar="CACHE", help="Cache folder built by python -m extract."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
    options: AddOptions = None,
) -> None:
    try:
        summary = add_sets(cache, options, show_progress=not quiet)
    except KeyboardInterrupt as interrupt:
        typer.echo(
            f"stopped at once by Ctrl-C: the part files in flight are lost, finished ones are kept in {cache}; "
            "run the same command again to resume",
            err=True,
        )
        raise typer.Exit(ExitCode.INTERRUPTED) from interrupt
    typer.echo(summary.line())
    if summary.interrupted:
        typer.echo(
            f"interrupted: finished part files are kept in {cache}; run the same command again to resume", err=True
        )
        raise typer.Exit(ExitCode.INTERRUPTED)
